package auth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Run refreshes the JWKS periodically and returns nil once its context is
// cancelled, a fetch in flight included; the constructor starts nothing.
func TestJWTRunLifecycle(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	js := newJWKSServer(t, keys["ec1"])
	a, err := NewJWTAuthenticator(JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: js.URL,
		RefreshInterval: 10 * time.Millisecond, MinRefetchInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := js.fetches.Load(); n != 0 {
		t.Fatalf("the constructor fetched the JWKS %d times; only Run and Verify may", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, 10*time.Second, "three periodic fetches", func() bool { return js.fetches.Load() >= 3 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	// A fetch that hangs is cancelled with Run, long before FetchTimeout.
	entered := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	}))
	defer hang.Close()
	b, err := NewJWTAuthenticator(JWTConfig{
		Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: hang.URL, FetchTimeout: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- b.Run(ctx) }()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not fetch the JWKS")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while its fetch hung")
	}

	// Without a JWKS URL there is nothing to run.
	static, err := NewJWTAuthenticator(JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKS: mustJWKS(t, keys["ec1"])})
	if err != nil {
		t.Fatal(err)
	}
	if err := static.Run(context.Background()); err != nil {
		t.Fatalf("Run without a JWKS URL = %v", err)
	}
}

// mustJWKS returns a JWK set of the public keys of keys.
func mustJWKS(t *testing.T, keys ...signingKey) []byte {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
