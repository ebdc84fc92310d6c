package auth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// fixedAuth answers every login with one identity.
type fixedAuth struct{ id Identity }

func (f fixedAuth) Name() string { return "fixed" }

func (f fixedAuth) Login(context.Context, string, string, LoginMeta) (Identity, error) {
	return f.id, nil
}

// No authenticator can hand out a user id in the service namespace: not a
// users file, not a JWT, not a webhook or custom authenticator in a chain.
func TestUserIDsNeverInServiceNamespace(t *testing.T) {
	t.Parallel()
	hash := mustHash(t, "pw", cheapArgon2)
	for _, name := range []string{"service:backend", "Service:backend", "SERVICE:"} {
		if _, err := ParseUsers([]byte(`"`+name+`":`+"\n  password: \""+hash+"\"\n"), ".yml"); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("users file with %q: %v, want refused as reserved", name, err)
		}
	}
	if _, err := ParseUsers([]byte("servicebackend:\n  password: \""+hash+"\"\n"), ".yml"); err != nil {
		t.Errorf("a username merely starting with \"service\" is a user: %v", err)
	}

	ctx := context.Background()
	chain := NewChain(fixedAuth{id: Identity{ID: "service:backend"}})
	if id, err := chain.Login(ctx, "x", "y", LoginMeta{}); err == nil || errors.Is(err, ErrUnknownUser) {
		t.Errorf("chain accepted identity %+v (%v)", id, err)
	}

	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{testKeys()["ed1"].public()}})
	if err != nil {
		t.Fatal(err)
	}
	a := newJWT(t, JWTConfig{JWKS: jwks})
	for _, sub := range []string{"service:backend", "sErViCe:backend"} {
		c := goodClaims()
		c["sub"] = sub
		if id, _, err := a.Verify(ctx, sign(t, testKeys()["ed1"], c)); !errors.Is(err, ErrRefused) {
			t.Errorf("JWT with sub %q: %+v, %v; want refused", sub, id, err)
		}
	}
	c := goodClaims()
	c["sub"] = "backend"
	if id, exp, err := a.Verify(ctx, sign(t, testKeys()["ed1"], c)); err != nil || id.ID != "backend" || exp.Before(time.Now()) {
		t.Errorf("JWT with sub backend: %+v, %v", id, err)
	}
}
