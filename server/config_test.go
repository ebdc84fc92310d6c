package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/auth"
)

// configUsersFile writes a users file at path whose users have password
// "<name>-pass" (cheap hashes) and role user, and returns path.
func configUsersFile(t *testing.T, path string, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		h, err := auth.HashPassword(n+"-pass", auth.Argon2Params{Memory: 64, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:\n  password: %q\n  serverData: {role: user}\n", n, h)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigExample(t *testing.T) {
	t.Parallel()
	fc, err := LoadConfigFile("../docs/sluice.example.yml")
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	docs, err := filepath.Abs("../docs")
	if err != nil {
		t.Fatal(err)
	}
	chain := fc.Auth.Chain
	if got := []string{chain[0].Type, chain[1].Type, chain[2].Type}; !slices.Equal(got, []string{"file", "http", "jwt"}) || len(chain) != 3 {
		t.Fatalf("chain types = %v", got)
	}
	if chain[0].Path != filepath.Join(docs, "users.yml") || chain[0].ReloadInterval != time.Second {
		t.Errorf("file entry = %+v (path must be relative to the config file)", chain[0])
	}
	if chain[1].URL != "https://auth.internal.example.com/sluice/login" || chain[1].Timeout != 3*time.Second ||
		chain[1].Headers["Authorization"] != "Bearer change-me" {
		t.Errorf("http entry = %+v", chain[1])
	}
	j := chain[2]
	if j.Issuer != "https://idp.example.com/" || !slices.Equal(j.Audience, []string{"sluice"}) ||
		j.JWKSURL != "https://idp.example.com/.well-known/jwks.json" || j.ClockSkew != 30*time.Second ||
		j.RefreshInterval != 15*time.Minute || j.MinRefetchInterval != time.Minute ||
		j.Claims.ID != "sub" || j.Claims.Roles != "roles" ||
		!slices.Equal(j.Claims.ServerData, []string{"org", "realm_access.roles"}) || !slices.Equal(j.Claims.ClientData, []string{"name"}) {
		t.Errorf("jwt entry = %+v", j)
	}
	s := fc.SessionsConfig(time.Hour)
	if s.TTL != 24*time.Hour || s.Idle != 30*time.Minute || s.CacheTTL != 2*time.Second {
		t.Errorf("sessions = %+v", s)
	}
	if s := (&FileConfig{}).SessionsConfig(time.Hour); s.TTL != time.Hour {
		t.Errorf("sessions without a ttl in the file = %+v, want the flag's 1h", s)
	}
	svc := fc.ServiceConfig()
	want := auth.ThrottleConfig{
		PerUserAddress: auth.Rate{Attempts: 5, Per: time.Minute, Burst: 5},
		PerUser:        auth.Rate{Attempts: 60, Per: time.Hour, Burst: 20},
		PerAddress:     auth.Rate{Attempts: 20, Per: time.Minute, Burst: 20},
		KnownFor:       720 * time.Hour,
		MaxKeys:        100000,
	}
	if svc.Throttle != want {
		t.Errorf("throttle = %+v, want %+v", svc.Throttle, want)
	}
	if !slices.Equal(svc.TrustedProxies, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}) {
		t.Errorf("trusted proxies = %v", svc.TrustedProxies)
	}
	if len(fc.Services) != 1 || fc.Services[0].Name != "billing-worker" || !strings.HasPrefix(fc.Services[0].SecretHash, "sha256:") {
		t.Errorf("services = %+v", fc.Services)
	}
	if fc.TLS != (TLSConfig{Cert: filepath.Join(docs, "tls/server.crt"), Key: filepath.Join(docs, "tls/server.key"), ClientCA: filepath.Join(docs, "tls/clients-ca.crt")}) {
		t.Errorf("tls = %+v", fc.TLS)
	}
	if !slices.Equal(fc.CORS.Origins, []string{"https://app.example.com", "http://localhost:5173"}) {
		t.Errorf("cors = %+v", fc.CORS)
	}
	if fc.ForceInsecure {
		t.Error("force_insecure set")
	}
}

func TestConfigEmpty(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "# nothing\n", "{}"} {
		fc, err := ParseConfig([]byte(data), "/etc/sluice")
		if err != nil {
			t.Fatalf("ParseConfig(%q) = %v", data, err)
		}
		login, tokens, closeAll, err := fc.Authenticators(":8080", nil)
		if err != nil || login != nil || tokens != nil {
			t.Fatalf("Authenticators of an empty config = %v, %v, %v", login, tokens, err)
		}
		closeAll()
	}
}

// TestConfigErrors checks that each invalid setting is refused with an
// error naming its field.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	hash := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name, yaml string
		field      string // must appear in the error
	}{
		{"unknown type", "auth: {chain: [{type: ldap}]}", "auth.chain[0].type"},
		{"missing type", "auth: {chain: [{path: u.yml}]}", "auth.chain[0].type"},
		{"file without path", "auth: {chain: [{type: file}]}", "auth.chain[0].path"},
		{"field of another type", "auth: {chain: [{type: file, path: u.yml, url: 'http://x'}]}", "auth.chain[0].url"},
		{"none with settings", "auth: {chain: [{type: file, path: u.yml}, {type: none, path: x}]}", "auth.chain[1].path"},
		{"negative reload", "auth: {chain: [{type: file, path: u.yml, reload_interval: -1s}]}", "auth.chain[0].reload_interval"},
		{"http without url", "auth: {chain: [{type: http}]}", "auth.chain[0].url"},
		{"http relative url", "auth: {chain: [{type: http, url: /login}]}", "auth.chain[0].url"},
		{"http bad header", "auth: {chain: [{type: http, url: 'http://x', headers: {'a b': c}}]}", "auth.chain[0].headers"},
		{"jwt without issuer", "auth: {chain: [{type: none}, {type: jwt, audience: a, jwks_url: 'https://x/j'}]}", "auth.chain[1].issuer"},
		{"jwt without audience", "auth: {chain: [{type: none}, {type: jwt, issuer: i, jwks_url: 'https://x/j'}]}", "auth.chain[1].audience"},
		{"jwt without keys", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a}]}", "auth.chain[1].jwks_url"},
		{"jwt bad jwks url", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, jwks_url: 'file:///j'}]}", "auth.chain[1].jwks_url"},
		{"jwt HS256", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j', algorithms: [HS256]}]}", "auth.chain[1].algorithms"},
		{"jwt alg none", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j', algorithms: [none]}]}", "auth.chain[1].algorithms"},
		{"two jwt", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j'}, {type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j'}]}", "auth.chain[2].type"},
		{"only jwt", "auth: {chain: [{type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j'}]}", "auth.chain"},
		{"none not last", "auth: {chain: [{type: none}, {type: file, path: u.yml}]}", "auth.chain[0]"},
		{"negative ttl", "auth: {sessions: {ttl: -1h}}", "auth.sessions.ttl"},
		{"idle too short", "auth: {sessions: {idle: 10s}}", "auth.sessions.idle"},
		{"idle over ttl", "auth: {sessions: {ttl: 1h, idle: 2h}}", "auth.sessions.idle"},
		{"cache ttl too long", "auth: {sessions: {cache_ttl: 5m}}", "auth.sessions.cache_ttl"},
		{"rate without per", "auth: {throttle: {per_user: {attempts: 5}}}", "auth.throttle.per_user.per"},
		{"rate without attempts", "auth: {throttle: {per_address: {per: 1m}}}", "auth.throttle.per_address.attempts"},
		{"negative burst", "auth: {throttle: {per_user: {attempts: 5, per: 1m, burst: -1}}}", "auth.throttle.per_user.burst"},
		{"negative max keys", "auth: {throttle: {max_keys: -1}}", "auth.throttle.max_keys"},
		{"bad proxy", "auth: {throttle: {trusted_proxies: [10.0.0.0/8, proxy.local]}}", "auth.throttle.trusted_proxies[1]"},
		{"service without name", "services: [{secret_hash: '" + hash + "'}]", "services[0].name"},
		{"service bad name", "services: [{name: 'Billing Worker', secret_hash: '" + hash + "'}]", "services[0].name"},
		{"duplicate service", "services: [{name: a, secret_hash: '" + hash + "'}, {name: a, secret_hash: '" + hash + "'}]", "services[1].name"},
		{"plain-text service secret", "services: [{name: a, secret_hash: hunter2}]", "services[0].secret_hash"},
		{"tls cert without key", "tls: {cert: a.crt}", "tls.key"},
		{"tls client ca alone", "tls: {client_ca: ca.crt}", "tls.client_ca"},
		{"cors path", "cors: {origins: ['https://app.example.com/path']}", "cors.origins[0]"},
		{"cors no scheme", "cors: {origins: [https://ok.example.com, app.example.com]}", "cors.origins[1]"},
		{"negative clock skew", "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, jwks_url: 'https://x/j', clock_skew: -1s}]}", "auth.chain[1].clock_skew"},
		{"mail security", "mail: {security: ssl}", "mail.security"},
		{"negative session cache", "auth: {sessions: {cache_ttl: -1s}}", "auth.sessions.cache_ttl"},
		{"unknown key", "auth: {chain: [{type: file, path: u.yml, reload: 1s}]}", "reload"},
		{"unknown section", "authentication: {}", "authentication"},
		{"duration as number", "auth: {sessions: {ttl: 3600}}", "time.Duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseConfig([]byte(tt.yaml), "/etc/sluice")
			if err == nil {
				t.Fatalf("ParseConfig(%s) accepted", tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
			if strings.Contains(err.Error(), "breaks the rule") {
				t.Fatalf("error %q has no message written for its rule (describeRule)", err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q repeats a secret", err)
			}
		})
	}
	// All the errors of a file are reported at once.
	_, err := ParseConfig([]byte("auth: {chain: [{type: file}, {type: http}]}\ntls: {cert: x}\n"), "/")
	for _, field := range []string{"auth.chain[0].path", "auth.chain[1].url", "tls.key"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("combined error %v lacks %s", err, field)
		}
	}
}

func TestConfigNoneNeedsLoopback(t *testing.T) {
	t.Parallel()
	fc, err := ParseConfig([]byte("auth: {chain: [{type: none}]}"), "/")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.9.9.9:1"} {
		login, _, closeAll, err := fc.Authenticators(addr, nil)
		if err != nil || login == nil {
			t.Fatalf("none on %s = %v, %v", addr, login, err)
		}
		id, err := login.Login(context.Background(), "whoever", "anything", auth.LoginMeta{})
		if err != nil || id.ID != "whoever" || !slices.Equal(id.Roles, []string{"anonymous"}) {
			t.Fatalf("none Login = %+v, %v", id, err)
		}
		closeAll()
	}
	for _, addr := range []string{":8080", "0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080", "sluice.example.com:443"} {
		if _, _, _, err := fc.Authenticators(addr, nil); err == nil || !strings.Contains(err.Error(), "force_insecure") {
			t.Fatalf("none on %s = %v; want refused, naming force_insecure", addr, err)
		}
	}
	forced, err := ParseConfig([]byte("force_insecure: true\nauth: {chain: [{type: none}]}"), "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, closeAll, err := forced.Authenticators(":8080", nil); err != nil {
		t.Fatalf("forced none on :8080 = %v", err)
	} else {
		closeAll()
	}
}

// TestConfigAuthenticators builds a real chain from a file: a users file
// (relative path), then none; a jwt entry with a static key file.
func TestConfigAuthenticators(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	configUsersFile(t, filepath.Join(dir, "users.yml"), "alice")
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "idp.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `
auth:
  chain:
    - {type: file, path: users.yml, reload_interval: 50ms}
    - {type: jwt, issuer: https://idp/, audience: [sluice], key_files: [idp.pem]}
    - {type: none}
`
	path := filepath.Join(dir, "sluice.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := LoadConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	login, tokens, closeAll, err := fc.Authenticators("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if tokens == nil || tokens.Name() != "jwt" {
		t.Fatalf("token authenticator = %v", tokens)
	}
	ctx := context.Background()
	if _, err := login.Login(ctx, "alice", "wrong", auth.LoginMeta{}); !errors.Is(err, auth.ErrRefused) {
		t.Fatalf("alice with a wrong password = %v; the file must refuse before none", err)
	}
	if id, err := login.Login(ctx, "alice", "alice-pass", auth.LoginMeta{}); err != nil || id.ID != "alice" || !slices.Equal(id.Roles, []string{"user"}) {
		t.Fatalf("alice = %+v, %v", id, err)
	}
	if id, err := login.Login(ctx, "zed", "x", auth.LoginMeta{}); err != nil || !slices.Equal(id.Roles, []string{"anonymous"}) {
		t.Fatalf("zed (none) = %+v, %v", id, err)
	}

	// Files that are missing or wrong fail at start, naming the entry.
	for name, cfg := range map[string]string{
		"auth.chain[0].path":         "auth: {chain: [{type: file, path: missing.yml}]}",
		"auth.chain[1].key_files[0]": "auth: {chain: [{type: none}, {type: jwt, issuer: i, audience: a, key_files: [users.yml]}]}",
	} {
		fc, err := ParseConfig([]byte(cfg), dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := fc.Authenticators("127.0.0.1:0", nil); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Authenticators = %v, want an error naming %s", err, name)
		}
	}
}

func TestOpenAuth(t *testing.T) {
	t.Parallel()
	users := configUsersFile(t, filepath.Join(t.TempDir(), "users.yml"), "bob")
	ctx := context.Background()

	// -users alone: the file, reloaded.
	s, err := OpenAuth(nil, Config{UsersFile: users, Addr: ":8080", SessionTTL: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login.Login(ctx, "bob", "bob-pass", auth.LoginMeta{}); err != nil {
		t.Fatalf("bob from -users = %v", err)
	}
	if s.Tokens != nil || s.Sessions.TTL != time.Hour {
		t.Fatalf("setup = %+v", s)
	}
	s.Close()

	// Nothing: the development users, on loopback only unless forced.
	if _, err := OpenAuth(&FileConfig{}, Config{Addr: ":8080", DevUsers: devUsers}, nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("development users on :8080 = %v, want refused", err)
	}
	if _, err := OpenAuth(&FileConfig{}, Config{Addr: "10.0.0.1:8080", DevUsers: devUsers}, nil); err == nil {
		t.Fatal("development users on 10.0.0.1 accepted")
	}
	for _, c := range []Config{{Addr: ":8080", InsecureDevUsers: true}, {Addr: "[::1]:8080"}, {Addr: "localhost:8080"}} {
		c.DevUsers = devUsers
		s, err := OpenAuth(&FileConfig{}, c, nil)
		if err != nil {
			t.Fatalf("development users with %+v: %v", c, err)
		}
		s.Close()
	}
	s, err = OpenAuth(&FileConfig{}, Config{Addr: "127.0.0.1:8080", DevUsers: devUsers}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login.Login(ctx, "userA", "wrong", auth.LoginMeta{}); !errors.Is(err, auth.ErrRefused) {
		t.Fatalf("development userA = %v", err)
	}
	s.Close()

	// Nothing and no development users (an embedding app): refused.
	if _, err := OpenAuth(&FileConfig{}, Config{Addr: "127.0.0.1:8080"}, nil); err == nil || !strings.Contains(err.Error(), "no users") {
		t.Fatalf("no users at all = %v, want refused", err)
	}

	// -users and a chain: refused.
	fc, err := ParseConfig([]byte("auth: {chain: [{type: file, path: "+users+"}]}"), "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAuth(fc, Config{UsersFile: users}, nil); err == nil {
		t.Fatal("-users together with auth.chain accepted")
	}
}

// FuzzParseConfig feeds arbitrary configuration files: ParseConfig never
// panics, and a configuration it accepts builds its settings without
// error (the authenticators themselves need files and are not built).
func FuzzParseConfig(f *testing.F) {
	example, err := os.ReadFile("../docs/sluice.example.yml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("auth: {chain: [{type: none}]}"))
	f.Add([]byte("auth: {throttle: {trusted_proxies: ['::1', 10.0.0.0/8]}, sessions: {idle: 1m}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := ParseConfig(data, "/etc/sluice")
		if err != nil {
			return
		}
		for _, e := range fc.Auth.Chain {
			if _, ok := fieldsOf[e.Type]; !ok {
				t.Fatalf("accepted authenticator type %q", e.Type)
			}
		}
		fc.SessionsConfig(time.Hour)
		svc := fc.ServiceConfig()
		if len(svc.TrustedProxies) != len(fc.Auth.Throttle.TrustedProxies) {
			t.Fatalf("trusted proxies %v parsed as %v", fc.Auth.Throttle.TrustedProxies, svc.TrustedProxies)
		}
		_ = fc.CheckListen(":8080")
	})
}
