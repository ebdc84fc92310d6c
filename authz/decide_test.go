package authz

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// mapFacts is a Facts over a fixed set of existing keys; it remembers what
// it was asked.
type mapFacts struct {
	exists map[string]bool
	asked  []string
}

func (m *mapFacts) Get(_ context.Context, key string, _ proto.Message) (bool, error) {
	m.asked = append(m.asked, key)
	return m.exists[key], nil
}

// permissionTable has one policy whose check reads a fact: the caller may
// act only if permissions/<id> exists.
func permissionTable(t *testing.T, log *slog.Logger) *Table {
	t.Helper()
	tab, err := NewTable(log, Policy{Procedure: procAdmin, Action: "color.set", Check: func(ctx context.Context, p *Principal, _ Resource, f Facts) error {
		ok, err := f.Get(ctx, "permissions/"+p.ID, nil)
		if err != nil {
			return err
		}
		if !ok {
			return Deny("color-permission", "no permission record")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestAuthorizeWithFacts(t *testing.T) {
	t.Parallel()
	tab := permissionTable(t, nil)
	facts := &mapFacts{exists: map[string]bool{"permissions/alice": true}}
	alice := WithPrincipal(context.Background(), &Principal{ID: "alice"})
	bob := WithPrincipal(context.Background(), &Principal{ID: "bob"})

	if err := tab.AuthorizeWith(alice, procAdmin, Resource{}, facts); err != nil {
		t.Fatalf("alice with a permission record: %v", err)
	}
	if err := tab.AuthorizeWith(bob, procAdmin, Resource{}, facts); !errors.Is(err, ErrDenied) {
		t.Fatalf("bob without a permission record: %v, want ErrDenied", err)
	}
	if got := strings.Join(facts.asked, ","); got != "permissions/alice,permissions/bob" {
		t.Fatalf("facts asked for %q", got)
	}
	// No facts means nothing is found: deny, never a nil-pointer panic.
	if err := tab.Authorize(alice, procAdmin, Resource{}); !errors.Is(err, ErrDenied) {
		t.Fatalf("Authorize without facts: %v, want ErrDenied", err)
	}
}

func TestServicePrincipalPassesChecks(t *testing.T) {
	t.Parallel()
	tab := testTable(t)
	svc := WithPrincipal(context.Background(), &Principal{ID: "mailer", Service: true})
	for _, proc := range []string{procAvatar, procAdmin} {
		if err := tab.Authorize(svc, proc, Resource{Owner: "someone-else"}); err != nil {
			t.Errorf("service principal on %s: %v, want allowed", proc, err)
		}
	}
	// A procedure without a policy stays closed to services too.
	if err := tab.Authorize(svc, "/sluice.x.v1.X/Unknown", Resource{}); !errors.Is(err, ErrDenied) {
		t.Errorf("service principal on an unknown procedure: %v, want ErrDenied", err)
	}
}

func TestDenialsAreLogged(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	tab := permissionTable(t, slog.New(slog.NewTextHandler(&logs, nil)))
	bob := WithPrincipal(context.Background(), &Principal{ID: "bob"})

	// Decide answers capability questions quietly.
	if err := tab.Decide(bob, procAdmin, Resource{}, nil); !errors.Is(err, ErrDenied) {
		t.Fatalf("Decide = %v, want ErrDenied", err)
	}
	if logs.Len() != 0 {
		t.Fatalf("Decide logged %q", logs.String())
	}
	if err := tab.Authorize(bob, procAdmin, Resource{Key: "global-color"}); !errors.Is(err, ErrDenied) {
		t.Fatalf("Authorize = %v, want ErrDenied", err)
	}
	out := logs.String()
	for _, want := range []string{"principal=bob", "rule=color-permission", "key=global-color", procAdmin} {
		if !strings.Contains(out, want) {
			t.Errorf("denial log %q lacks %q", out, want)
		}
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("one denial logged %d times", n)
	}
}

// Service principals act as "service:<name>", whichever credential they
// present; a service name in that namespace is refused.
func TestServicePrincipalIDs(t *testing.T) {
	t.Parallel()
	token, hash, err := NewServiceToken()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := NewServiceCredentials([]ServiceCredential{{Name: "billing", TokenHash: hash}, {Name: "reporter"}})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := sc.ByToken(token); !ok || p.ID != "service:billing" || !p.Service {
		t.Errorf("ByToken = %+v, %v; want service:billing", p, ok)
	}
	if p, ok := sc.ByCertName("reporter"); !ok || p.ID != "service:reporter" || !p.Service {
		t.Errorf("ByCertName = %+v, %v; want service:reporter", p, ok)
	}
	if _, ok := sc.ByCertName("service:reporter"); ok {
		t.Error("ByCertName accepted the principal id as a certificate name")
	}
	if _, err := NewServiceCredentials([]ServiceCredential{{Name: "Service:x"}}); err == nil {
		t.Error("a service name in the service namespace was accepted")
	}
	for id, want := range map[string]bool{"service:a": true, "SERVICE:": true, "service": false, "services:a": false, "a:service:b": false, "": false} {
		if got := IsServiceID(id); got != want {
			t.Errorf("IsServiceID(%q) = %v, want %v", id, got, want)
		}
	}
}
