package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
)

const (
	testIssuer   = "https://idp.example.com/"
	testAudience = "sluice"
)

// signingKey is a private key with its JWK key id and algorithm.
type signingKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func (k signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// Keys are generated once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() map[string]signingKey {
	rsa1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	rsa2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	ec1, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed1, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return map[string]signingKey{
		"rsa1":  {"rsa1", AlgRS256, rsa1},
		"rsa2":  {"rsa2", AlgRS256, rsa2},
		"ec1":   {"ec1", AlgES256, ec1},
		"ec384": {"ec384", "ES384", ec384},
		"ed1":   {"ed1", AlgEdDSA, ed1},
	}
})

// claims are a token's claims; std fields are filled by goodClaims.
type claims map[string]any

func goodClaims() claims {
	now := time.Now()
	return claims{
		"iss":   testIssuer,
		"aud":   []string{"other", testAudience},
		"sub":   "user-42",
		"exp":   now.Add(time.Hour).Unix(),
		"nbf":   now.Add(-time.Minute).Unix(),
		"iat":   now.Unix(),
		"roles": []string{"member", "admin"},
		"org":   "acme",
		"realm_access": map[string]any{
			"groups": []string{"g1"},
		},
		"name": "Forty-Two",
	}
}

// sign returns a compact JWS of c signed by k (with k's kid).
func sign(t testing.TB, k signingKey, c claims) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(map[string]any(c)).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawToken builds a compact JWS by hand from a header, claims and a MAC
// function (nil: empty signature), for tokens no honest library makes.
func rawToken(t testing.TB, header map[string]any, c claims, mac func(signingInput []byte) []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var sig []byte
	if mac != nil {
		sig = mac([]byte(input))
	}
	return input + "." + enc.EncodeToString(sig)
}

// jwksServer serves a JWK set that a test can change, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	status  int
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...signingKey) *jwksServer {
	t.Helper()
	js := &jwksServer{status: http.StatusOK}
	js.set(keys...)
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		js.mu.Lock()
		status, set := js.status, jose.JSONWebKeySet{Keys: js.keys}
		js.mu.Unlock()
		if status != http.StatusOK {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(js.Close)
	return js
}

func (js *jwksServer) set(keys ...signingKey) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.keys = nil
	for _, k := range keys {
		js.keys = append(js.keys, k.public())
	}
}

func (js *jwksServer) setStatus(code int) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.status = code
}

func newJWT(t *testing.T, cfg JWTConfig) *JWTAuthenticator {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == nil {
		cfg.Audience = []string{testAudience}
	}
	a, err := NewJWTAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runJWT(t, a)
	return a
}

// runJWT runs a's key refresh until the test ends, and fails the test if
// Run does not return once cancelled.
func runJWT(t *testing.T, a *JWTAuthenticator) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
}

func TestJWTVerify(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	js := newJWKSServer(t, keys["rsa1"], keys["ec1"], keys["ed1"])
	a := newJWT(t, JWTConfig{
		JWKSURL:            js.URL,
		MinRefetchInterval: time.Hour,
		ServerDataClaims:   []string{"org", "realm_access.groups", "absent"},
		ClientDataClaims:   []string{"name"},
	})
	ctx := context.Background()

	for _, name := range []string{"rsa1", "ec1", "ed1"} {
		t.Run("good/"+keys[name].alg, func(t *testing.T) {
			c := goodClaims()
			id, exp, err := a.Verify(ctx, sign(t, keys[name], c))
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			if id.ID != "user-42" || !slices.Equal(id.Roles, []string{"admin", "member"}) {
				t.Fatalf("identity = %+v", id)
			}
			if id.ServerData["org"] != "acme" || !slices.Equal(id.ServerData["realm_access.groups"].([]any), []any{"g1"}) ||
				len(id.ServerData) != 2 || id.ClientData["name"] != "Forty-Two" || len(id.ClientData) != 1 {
				t.Fatalf("data = %v / %v", id.ServerData, id.ClientData)
			}
			if exp.Unix() != c["exp"].(int64) {
				t.Fatalf("expiry = %v, want %v", exp.Unix(), c["exp"])
			}
		})
	}

	t.Run("roles as a space-separated string", func(t *testing.T) {
		c := goodClaims()
		c["roles"] = "b a  b"
		id, _, err := a.Verify(ctx, sign(t, keys["ec1"], c))
		if err != nil || !slices.Equal(id.Roles, []string{"a", "b"}) {
			t.Fatalf("Verify = %+v, %v", id, err)
		}
	})

	with := func(mod func(claims)) claims {
		c := goodClaims()
		mod(c)
		return c
	}
	now := time.Now()
	pub := keys["rsa1"].priv.Public()
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacWith := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	// A token signed by rsa2 but claiming rsa1's kid.
	impostor := keys["rsa2"]
	impostor.kid = "rsa1"
	refused := []struct {
		name  string
		token string
	}{
		{"expired", sign(t, keys["rsa1"], with(func(c claims) { c["exp"] = now.Add(-2 * time.Minute).Unix() }))},
		{"not yet valid", sign(t, keys["ec1"], with(func(c claims) { c["nbf"] = now.Add(2 * time.Minute).Unix() }))},
		{"issued in the future", sign(t, keys["ec1"], with(func(c claims) { c["iat"] = now.Add(2 * time.Minute).Unix() }))},
		{"no exp", sign(t, keys["ed1"], with(func(c claims) { delete(c, "exp") }))},
		{"wrong issuer", sign(t, keys["rsa1"], with(func(c claims) { c["iss"] = "https://evil.example.com/" }))},
		{"no issuer", sign(t, keys["rsa1"], with(func(c claims) { delete(c, "iss") }))},
		{"wrong audience", sign(t, keys["ec1"], with(func(c claims) { c["aud"] = "other" }))},
		{"no audience", sign(t, keys["ec1"], with(func(c claims) { delete(c, "aud") }))},
		{"no sub", sign(t, keys["ed1"], with(func(c claims) { delete(c, "sub") }))},
		{"empty sub", sign(t, keys["ed1"], with(func(c claims) { c["sub"] = "" }))},
		{"wrong key, known kid", sign(t, impostor, goodClaims())},
		{"ES384 not accepted", sign(t, keys["ec384"], goodClaims())},
		{"alg none", rawToken(t, map[string]any{"alg": "none", "typ": "JWT"}, goodClaims(), nil)},
		{"alg none with kid", rawToken(t, map[string]any{"alg": "none", "kid": "rsa1"}, goodClaims(), nil)},
		{"HS256 with the public key PEM as secret", rawToken(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, goodClaims(), hmacWith(pubPEM))},
		{"HS256 with the public key DER as secret", rawToken(t, map[string]any{"alg": "HS256"}, goodClaims(), hmacWith(pubDER))},
		{"RS256 header, ES256 signature", func() string {
			tok := sign(t, keys["ec1"], goodClaims())
			parts := strings.Split(tok, ".")
			h, _ := json.Marshal(map[string]any{"alg": "RS256", "kid": "rsa1"})
			return base64.RawURLEncoding.EncodeToString(h) + "." + parts[1] + "." + parts[2]
		}()},
		{"tampered payload", func() string {
			tok := sign(t, keys["rsa1"], goodClaims())
			parts := strings.Split(tok, ".")
			c := goodClaims()
			c["sub"] = "admin"
			p, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
		}()},
		{"not a JWT", "slc_notajwt"},
		{"two parts", "a.b"},
		{"huge", strings.Repeat("a", maxJWTBytes) + ".b.c"},
	}
	for _, tt := range refused {
		t.Run("refused/"+tt.name, func(t *testing.T) {
			id, _, err := a.Verify(ctx, tt.token)
			if !errors.Is(err, ErrRefused) || id.ID != "" {
				t.Fatalf("Verify = %+v, %v; want ErrRefused", id, err)
			}
		})
	}
	// A flood of unknown kids does not hammer the JWKS: refetches are
	// limited to one per MinRefetchInterval (an hour here).
	unknown := keys["ed1"]
	unknown.kid = "unknown-kid"
	for range 20 {
		if _, _, err := a.Verify(ctx, sign(t, unknown, goodClaims())); !errors.Is(err, ErrRefused) {
			t.Fatalf("Verify(unknown kid) = %v, want ErrRefused", err)
		}
	}
	// One fetch in all: the one at start.
	if n := js.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestJWTStaticKeys(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	ctx := context.Background()
	var pemData []byte
	for _, name := range []string{"rsa1", "ed1"} {
		der, err := x509.MarshalPKIXPublicKey(keys[name].priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	pubs, err := ParsePublicKeys(pemData)
	if err != nil || len(pubs) != 2 {
		t.Fatalf("ParsePublicKeys = %d keys, %v", len(pubs), err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{keys["ec1"].public()}})
	a := newJWT(t, JWTConfig{Keys: pubs, JWKS: jwks, Algorithms: []string{AlgRS256, AlgES256, AlgEdDSA}})
	for _, name := range []string{"rsa1", "ed1", "ec1"} {
		if _, _, err := a.Verify(ctx, sign(t, keys[name], goodClaims())); err != nil {
			t.Errorf("Verify(%s) = %v", name, err)
		}
	}
	if _, _, err := a.Verify(ctx, sign(t, keys["rsa2"], goodClaims())); !errors.Is(err, ErrRefused) {
		t.Errorf("Verify(unknown rsa2) = %v, want ErrRefused", err)
	}
	// Restricting the algorithms refuses the others.
	only := newJWT(t, JWTConfig{Keys: pubs, Algorithms: []string{AlgEdDSA}})
	if _, _, err := only.Verify(ctx, sign(t, keys["rsa1"], goodClaims())); !errors.Is(err, ErrRefused) {
		t.Errorf("RS256 with algorithms [EdDSA] = %v, want ErrRefused", err)
	}

	// Private keys, weak keys and unsupported curves are not accepted as
	// static keys.
	privDER, _ := x509.MarshalPKCS8PrivateKey(keys["ec1"].priv)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakDER, _ := x509.MarshalPKIXPublicKey(&weak.PublicKey)
	p384DER, _ := x509.MarshalPKIXPublicKey(keys["ec384"].priv.Public())
	for name, data := range map[string][]byte{
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}),
		"rsa 1024":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: weakDER}),
		"p-384":       pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: p384DER}),
		"no pem":      []byte("hello"),
	} {
		if _, err := ParsePublicKeys(data); err == nil {
			t.Errorf("ParsePublicKeys(%s) accepted", name)
		}
	}
	for name, cfg := range map[string]JWTConfig{
		"no issuer":   {Audience: []string{"a"}, Keys: pubs},
		"no audience": {Issuer: "i", Keys: pubs},
		"no keys":     {Issuer: "i", Audience: []string{"a"}},
		"HS256":       {Issuer: "i", Audience: []string{"a"}, Keys: pubs, Algorithms: []string{"HS256"}},
		"none":        {Issuer: "i", Audience: []string{"a"}, Keys: pubs, Algorithms: []string{"none"}},
		"weak key":    {Issuer: "i", Audience: []string{"a"}, Keys: []crypto.PublicKey{&weak.PublicKey}},
		"bad jwks":    {Issuer: "i", Audience: []string{"a"}, JWKS: []byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`)},
		"jwks url":    {Issuer: "i", Audience: []string{"a"}, JWKSURL: "file:///etc/jwks.json"},
	} {
		if _, err := NewJWTAuthenticator(cfg); err == nil {
			t.Errorf("NewJWTAuthenticator(%s) accepted", name)
		}
	}
}

func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	ctx := context.Background()
	js := newJWKSServer(t, keys["rsa1"])
	a := newJWT(t, JWTConfig{JWKSURL: js.URL, MinRefetchInterval: 50 * time.Millisecond, RefreshInterval: time.Hour})
	if _, _, err := a.Verify(ctx, sign(t, keys["rsa1"], goodClaims())); err != nil {
		t.Fatalf("Verify(rsa1) = %v", err)
	}
	waitFor(t, 10*time.Second, "the first fetch", func() bool { return js.fetches.Load() >= 1 })

	// The issuer rotates to ec1: the unknown kid triggers a refetch.
	js.set(keys["rsa1"], keys["ec1"])
	time.Sleep(60 * time.Millisecond) // past MinRefetchInterval
	before := js.fetches.Load()
	if _, _, err := a.Verify(ctx, sign(t, keys["ec1"], goodClaims())); err != nil {
		t.Fatalf("Verify(ec1) after rotation = %v", err)
	}
	if n := js.fetches.Load(); n != before+1 {
		t.Fatalf("fetches = %d, want %d (one refetch for the new kid)", n, before+1)
	}

	// Keys removed from the set stop working once it is refetched.
	js.set(keys["ec1"])
	time.Sleep(60 * time.Millisecond)
	if _, _, err := a.Verify(ctx, sign(t, keys["ed1"], goodClaims())); !errors.Is(err, ErrRefused) {
		t.Fatalf("Verify(ed1) = %v", err) // unknown kid: refetches the new set
	}
	if _, _, err := a.Verify(ctx, sign(t, keys["rsa1"], goodClaims())); !errors.Is(err, ErrRefused) {
		t.Fatalf("Verify(rsa1) after it was removed = %v, want ErrRefused", err)
	}
}

func TestJWTUnavailable(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	ctx := context.Background()
	js := newJWKSServer(t, keys["rsa1"])
	js.setStatus(http.StatusBadGateway)
	var logs logBuffer
	a := newJWT(t, JWTConfig{JWKSURL: js.URL, MinRefetchInterval: 50 * time.Millisecond, Logger: logs.logger()})
	// No key could be fetched: the token can be neither accepted nor
	// refused.
	_, _, err := a.Verify(ctx, sign(t, keys["rsa1"], goodClaims()))
	if !errors.Is(err, ErrUnavailable) || connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("Verify with the JWKS down = %v, want unavailable", err)
	}
	// The JWKS comes back; after the retry interval the key is fetched.
	js.setStatus(http.StatusOK)
	time.Sleep(60 * time.Millisecond)
	if _, _, err := a.Verify(ctx, sign(t, keys["rsa1"], goodClaims())); err != nil {
		t.Fatalf("Verify after the JWKS recovered = %v", err)
	}
	// It goes down again: known keys keep working.
	js.setStatus(http.StatusInternalServerError)
	time.Sleep(60 * time.Millisecond)
	if _, _, err := a.Verify(ctx, sign(t, keys["ec1"], goodClaims())); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown kid with the JWKS down = %v, want unavailable", err)
	}
	if _, _, err := a.Verify(ctx, sign(t, keys["rsa1"], goodClaims())); err != nil {
		t.Fatalf("known key with the JWKS down = %v", err)
	}
	if !strings.Contains(logs.String(), "jwks fetch failed") {
		t.Fatalf("fetch failures not logged:\n%s", logs.String())
	}
}

// TestJWTBearer sends JWTs on calls through the real interceptor.
func TestJWTBearer(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	js := newJWKSServer(t, keys["ec1"])
	srv := newAuthServer(t, authServerConfig{
		login:  None{},
		tokens: newJWT(t, JWTConfig{JWKSURL: js.URL, MinRefetchInterval: time.Hour, ClientDataClaims: []string{"name"}}),
	})
	ctx := context.Background()
	c := goodClaims()
	token := sign(t, keys["ec1"], c)

	req := connect.NewRequest(&authv1.WhoAmIRequest{})
	bearerHeader(req.Header(), token)
	res, err := srv.client.WhoAmI(ctx, req)
	if err != nil {
		t.Fatalf("WhoAmI with a JWT = %v", err)
	}
	if res.Msg.GetUserId() != "user-42" || !slices.Equal(res.Msg.GetRoles(), []string{"admin", "member"}) ||
		res.Msg.GetSessionExpiresAt().AsTime().Unix() != c["exp"].(int64) ||
		res.Msg.GetClientData().AsMap()["name"] != "Forty-Two" {
		t.Fatalf("WhoAmI = %v", res.Msg)
	}

	// A JWT principal has no session to log out.
	lreq := connect.NewRequest(&authv1.LogoutRequest{})
	bearerHeader(lreq.Header(), token)
	if _, err := srv.client.Logout(ctx, lreq); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Logout with a JWT = %v, want failed_precondition", err)
	}

	bad := []string{
		sign(t, keys["ec1"], func() claims { c := goodClaims(); c["aud"] = "other"; return c }()),
		rawToken(t, map[string]any{"alg": "none"}, goodClaims(), nil),
		"slc_" + strings.Repeat("x", 43),
		"garbage",
	}
	for _, tok := range bad {
		req := connect.NewRequest(&authv1.WhoAmIRequest{})
		bearerHeader(req.Header(), tok)
		if _, err := srv.client.WhoAmI(ctx, req); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("WhoAmI with %.30q = %v, want unauthenticated", tok, err)
		}
	}

	// Session tokens keep working next to JWTs.
	login, err := srv.client.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "dev", Password: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	req = connect.NewRequest(&authv1.WhoAmIRequest{})
	bearerHeader(req.Header(), login.Msg.GetToken())
	if res, err := srv.client.WhoAmI(ctx, req); err != nil || res.Msg.GetUserId() != "dev" || !slices.Equal(res.Msg.GetRoles(), []string{"anonymous"}) {
		t.Fatalf("WhoAmI with a session token = %v, %v", res, err)
	}

	// The JWKS goes down and a token names an unknown key: unavailable,
	// not unauthenticated (the client should retry, not log the user out).
	js.setStatus(http.StatusServiceUnavailable)
	down := newAuthServer(t, authServerConfig{login: None{}, tokens: newJWT(t, JWTConfig{JWKSURL: js.URL})})
	req = connect.NewRequest(&authv1.WhoAmIRequest{})
	bearerHeader(req.Header(), token)
	if _, err := down.client.WhoAmI(ctx, req); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("WhoAmI with the JWKS down = %v, want unavailable", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"a.b.c":                            true,
		"eyJ.eyJ.sig-_":                    true,
		"a.b":                              false,
		"a.b.c.d":                          false,
		"a..c":                             false,
		"a.b.c=":                           false,
		"a.b+.c":                           false,
		"slc_abc":                          false,
		strings.Repeat("a", 9000) + ".b.c": false,
	} {
		if got := looksLikeJWT(s); got != want {
			t.Errorf("looksLikeJWT(%.20q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzJWTVerify feeds arbitrary bearer tokens to Verify: it never panics,
// and anything it accepts has an id and an expiry in the future.
func FuzzJWTVerify(f *testing.F) {
	keys := testKeys()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{keys["ec1"].public(), keys["ed1"].public()}})
	a, err := NewJWTAuthenticator(JWTConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKS: jwks})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sign(f, keys["ec1"], goodClaims()))
	f.Add(sign(f, keys["ed1"], goodClaims()))
	f.Add(rawToken(f, map[string]any{"alg": "none"}, goodClaims(), nil))
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		id, exp, err := a.Verify(context.Background(), token)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("Verify(%q) = %v, want ErrRefused for anything invalid", token, err)
			}
			return
		}
		if id.ID == "" || !exp.After(time.Now().Add(-time.Minute)) {
			t.Fatalf("Verify(%q) accepted %+v expiring %v", token, id, exp)
		}
	})
}
