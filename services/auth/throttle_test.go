package auth

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                  { return c.t }
func (c *fakeClock) add(d time.Duration)             { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock                       { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func (t *throttle) withClock(c *fakeClock) *throttle { t.now = c.now; return t }

// allowed reports whether take allowed the attempt.
func allowed(_ charge, ok bool) bool { return ok }

func TestThrottleBuckets(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	th := newThrottle(ThrottleConfig{}).withClock(clock)
	for i := range 5 {
		if !allowed(th.take("alice", "192.0.2.1")) {
			t.Fatalf("attempt %d refused; the default allows 5 per minute", i+1)
		}
	}
	if allowed(th.take("alice", "192.0.2.1")) {
		t.Fatal("6th attempt for alice from one address within a minute allowed")
	}
	if allowed(th.take("ALICE", "192.0.2.1")) {
		t.Fatal("the username limit is case-sensitive")
	}
	if !allowed(th.take("bob", "192.0.2.1")) {
		t.Fatal("bob throttled by alice's attempts")
	}
	// Another address has an allowance of its own for alice.
	if !allowed(th.take("alice", "192.0.2.2")) {
		t.Fatal("alice locked out of another address by one address's failures")
	}
	// 5 per minute: one attempt back every 12s.
	clock.add(12 * time.Second)
	if !allowed(th.take("alice", "192.0.2.1")) {
		t.Fatal("no attempt back after 12s")
	}
	if allowed(th.take("alice", "192.0.2.1")) {
		t.Fatal("two attempts back after 12s")
	}
	// A success is refunded: it does not use the allowance up.
	clock.add(time.Minute)
	for i := range 20 {
		c, ok := th.take("carol", "192.0.2.9")
		if !ok {
			t.Fatalf("successful login %d throttled", i+1)
		}
		th.succeeded(c)
	}
}

// Guessing one password from many addresses is bounded per username (20
// at once, 60 an hour by default), and a stranger who spends that
// allowance does not lock the user out of an address they have logged in
// from before.
func TestThrottlePerUserSparesKnownAddresses(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	th := newThrottle(ThrottleConfig{}).withClock(clock)
	c, ok := th.take("victim", "198.51.100.7")
	if !ok {
		t.Fatal("first login refused")
	}
	th.succeeded(c)

	refused := 0
	for i := range 100 {
		if !allowed(th.take("victim", fmt.Sprintf("203.0.%d.%d", i/200, i%200))) {
			refused++
		}
	}
	if refused != 80 {
		t.Fatalf("100 attempts from 100 addresses: %d refused, want 80 (the username's burst is 20)", refused)
	}
	if allowed(th.take("victim", "192.0.2.200")) {
		t.Fatal("a new address got past the spent username allowance")
	}
	for i := range 5 {
		c, ok := th.take("victim", "198.51.100.7")
		if !ok {
			t.Fatalf("victim's login %d from a known address refused", i+1)
		}
		th.succeeded(c)
	}
	// The allowance refills (60 an hour: one a minute).
	clock.add(time.Minute)
	if !allowed(th.take("victim", "192.0.2.200")) {
		t.Fatal("no attempt back for a new address after a minute")
	}
	// Known addresses are forgotten after KnownFor.
	clock.add(DefaultKnownFor)
	for i := range 20 {
		th.take("victim", fmt.Sprintf("203.0.113.%d", i))
	}
	if allowed(th.take("victim", "198.51.100.7")) {
		t.Fatal("an address known 30 days ago is still exempt")
	}
}

func TestThrottlePerAddress(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	th := newThrottle(ThrottleConfig{PerAddress: Rate{Attempts: 3, Per: time.Minute}}).withClock(clock)
	for i := range 3 {
		if !allowed(th.take(fmt.Sprintf("user%d", i), "2001:db8:1:2::10")) {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	// Spraying other usernames from the same address, or from another
	// address of the same /64, is throttled.
	if allowed(th.take("user9", "2001:db8:1:2::10")) || allowed(th.take("user9", "2001:db8:1:2:ffff::1")) {
		t.Fatal("4th attempt from one address (or its /64) allowed")
	}
	if !allowed(th.take("user9", "2001:db8:1:3::10")) || !allowed(th.take("user9", "192.0.2.1")) {
		t.Fatal("other addresses throttled")
	}
	// A refused attempt charges nothing: user9 still has its own allowance.
	clock.add(time.Minute)
	for i := range 3 {
		if !allowed(th.take("user9", fmt.Sprintf("198.51.100.%d", i))) {
			t.Fatalf("user9 attempt %d refused", i+1)
		}
	}
	if !allowed(newThrottle(ThrottleConfig{Disabled: true}).take("x", "y")) {
		t.Fatal("disabled throttle refused")
	}
}

func TestThrottleMemoryBounded(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	th := newThrottle(ThrottleConfig{MaxKeys: 100, PerAddress: Rate{Attempts: 1_000_000, Per: time.Minute}}).withClock(clock)
	for i := range 10_000 {
		th.take(fmt.Sprintf("user-%d", i), fmt.Sprintf("10.0.%d.%d", i/256, i%256))
		if n, m, p := len(th.user.m), len(th.addr.m), len(th.pair.m); n > 100 || m > 100 || p > 100 {
			t.Fatalf("after %d distinct usernames: %d users, %d addresses, %d pairs tracked; bound is 100", i+1, n, m, p)
		}
		c, _ := th.take(fmt.Sprintf("ok-%d", i), "10.200.0.1")
		th.succeeded(c)
		if n := len(th.known.m); n > 100 {
			t.Fatalf("%d known addresses tracked; bound is 100", n)
		}
	}
	// Idle buckets (refilled) are swept even below the bound.
	clock.add(2 * time.Hour)
	th.take("fresh", "10.9.9.9")
	if n := len(th.user.m); n != 1 {
		t.Fatalf("%d users tracked after all went idle, want 1", n)
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		peer, xff string
		want      string
	}{
		{"203.0.113.5:4321", "", "203.0.113.5"},
		{"203.0.113.5:4321", "1.2.3.4", "203.0.113.5"}, // untrusted peer: header ignored
		{"10.1.2.3:80", "198.51.100.7", "198.51.100.7"},
		{"10.1.2.3:80", "6.6.6.6, 198.51.100.7, 10.9.9.9", "198.51.100.7"}, // spoofed left part ignored
		{"10.1.2.3:80", "", "10.1.2.3"},
		{"10.1.2.3:80", "garbage, 198.51.100.7", "198.51.100.7"},
		{"10.1.2.3:80", "198.51.100.7, garbage", "10.1.2.3"},
		{"10.1.2.3:80", "10.4.4.4, 10.5.5.5", "10.4.4.4"}, // all proxies: the left-most
		{"[fd00::1]:80", "2001:db8::9", "2001:db8::9"},
		{"[::ffff:203.0.113.5]:1", "", "203.0.113.5"},
		{"pipe", "1.2.3.4", "pipe"},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.xff != "" {
			h.Set("X-Forwarded-For", tt.xff)
		}
		if got := clientAddr(tt.peer, h, proxies); got != tt.want {
			t.Errorf("clientAddr(%q, %q) = %q, want %q", tt.peer, tt.xff, got, tt.want)
		}
	}
}

// TestLoginThrottled goes through the AuthService: once throttled, the
// right password gets exactly the wrong password's answer.
func TestLoginThrottled(t *testing.T) {
	t.Parallel()
	users, err := ParseUsers([]byte(cheapUsersFile(t, "alice", "bob")), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	srv := newAuthServer(t, authServerConfig{
		login: users,
		service: ServiceConfig{
			Throttle:       ThrottleConfig{PerAddress: Rate{Attempts: 8, Per: time.Minute}},
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
		},
	})
	ctx := context.Background()
	login := func(user, pw, from string) error {
		req := connect.NewRequest(&authv1.LoginRequest{Username: user, Password: pw})
		req.Header().Set("X-Forwarded-For", from)
		_, err := srv.client.Login(ctx, req)
		return err
	}
	// Successful logins are not charged.
	for range 6 {
		if err := login("bob", "bob-pw", "198.51.100.1"); err != nil {
			t.Fatalf("bob's login = %v", err)
		}
	}
	for i := range 5 {
		if err := login("alice", "guess", "198.51.100.1"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("wrong password %d = %v, want unauthenticated", i+1, err)
		}
	}
	wrong := login("alice", "guess", "198.51.100.1")
	right := login("alice", "alice-pw", "198.51.100.1")
	for name, err := range map[string]error{"wrong": wrong, "right": right} {
		if connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("6th attempt (%s password) = %v, want resource_exhausted", name, err)
		}
	}
	if wrong.Error() != right.Error() {
		t.Fatalf("throttled answers differ: %q vs %q", wrong, right)
	}
	// The guesser's failures do not lock alice out: from her own address
	// she logs in, while the guesser stays throttled.
	if err := login("alice", "alice-pw", "198.51.100.3"); err != nil {
		t.Fatalf("alice from another address after a stranger's failures: %v", err)
	}
	if err := login("alice", "guess", "198.51.100.1"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("the guesser after alice's login = %v, want resource_exhausted", err)
	}

	// Per address: 8 failures from one client address (as reported by
	// the trusted proxy) block every username from it.
	for i := range 3 {
		if err := login(fmt.Sprintf("spray%d", i), "x", "203.0.113.50"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("spray %d = %v", i, err)
		}
	}
	for i := range 5 {
		if err := login("bob", "nope", "203.0.113.50"); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("bob wrong %d = %v", i, err)
		}
	}
	if err := login("carol", "x", "203.0.113.50"); connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("9th attempt from one address = %v, want resource_exhausted", err)
	}
	if err := login("dave", "x", "203.0.113.51"); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("another address = %v, want unauthenticated", err)
	}
}
