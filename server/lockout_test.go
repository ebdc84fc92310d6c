package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
)

// A stranger who fails over and over to log in as bob, from one address
// or from many, does not lock bob out: he logs in from an address of his
// own at once (or, from an address he never used, after a stranger spread
// over many addresses spent his allowance, from one he used before),
// while the stranger stays throttled.
func TestLoginLockoutOfVictim(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	path := filepath.Join(t.TempDir(), "sluice.yml")
	// Loopback is the trusted proxy: X-Forwarded-For names the client.
	y := fmt.Sprintf("auth:\n  chain:\n    - type: file\n      path: %s\n  throttle:\n    trusted_proxies: [127.0.0.1]\n", cfg.UsersFile)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.UsersFile, cfg.ConfigFile = "", path
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	auth := newClient(app.url).auth
	login := func(user, pw, from string) error {
		req := connect.NewRequest(&authv1.LoginRequest{Username: user, Password: pw})
		req.Header().Set("X-Forwarded-For", from)
		_, err := auth.Login(ctx, req)
		return err
	}

	// Bob has logged in from home before.
	if err := login("bob", "bob-pass", "198.51.100.10"); err != nil {
		t.Fatal(err)
	}
	// One attacker address: 5 failures, then throttled, however long it
	// keeps trying.
	for i := range 30 {
		err := login("bob", "guess", "203.0.113.66")
		want := connect.CodeUnauthenticated
		if i >= 5 {
			want = connect.CodeResourceExhausted
		}
		if codeOf(err) != want {
			t.Fatalf("attacker attempt %d = %v, want %v", i+1, err, want)
		}
	}
	// Bob logs in from an address he never used (a café), and from home.
	if err := login("bob", "bob-pass", "192.0.2.44"); err != nil {
		t.Fatalf("bob from a new address after one attacker address failed 30 times: %v", err)
	}
	if err := login("bob", "bob-pass", "198.51.100.10"); err != nil {
		t.Fatalf("bob from home: %v", err)
	}
	if err := login("bob", "bob-pass", "203.0.113.66"); codeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("the attacker's address with the right password = %v, want resource_exhausted", err)
	}

	// Many attacker addresses spend bob's allowance for new addresses
	// (20 at once); his own addresses still work.
	for i := range 40 {
		_ = login("bob", "guess", fmt.Sprintf("203.0.114.%d", i))
	}
	if err := login("bob", "bob-pass", "192.0.2.99"); codeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a new address after a spread attack = %v, want resource_exhausted (the documented trade-off)", err)
	}
	for _, from := range []string{"198.51.100.10", "192.0.2.44"} {
		if err := login("bob", "bob-pass", from); err != nil {
			t.Fatalf("bob from %s, where he logged in before, during a spread attack: %v", from, err)
		}
	}
}
