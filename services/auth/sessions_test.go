package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
)

func TestSessionsIdleExpiry(t *testing.T) {
	t.Parallel()
	const idle = 800 * time.Millisecond
	s := NewSessions(testStore(t), SessionsConfig{Idle: idle, TouchEvery: 100 * time.Millisecond, CacheTTL: 50 * time.Millisecond})
	ctx := context.Background()
	active, _, err := s.Create(ctx, Identity{ID: "alice", Roles: []string{"member"}})
	if err != nil {
		t.Fatal(err)
	}
	idler, _, err := s.Create(ctx, Identity{ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	streamer, _, err := s.Create(ctx, Identity{ID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Principal(ctx, streamer)
	if err != nil {
		t.Fatal(err)
	}
	streamID := p.SessionID

	// Use one session steadily for longer than the idle timeout; keep
	// another alive only through its stream's session checks.
	deadline := time.Now().Add(idle * 2)
	for time.Now().Before(deadline) {
		if p, err := s.Principal(ctx, active); err != nil || p.ID != "alice" {
			t.Fatalf("active session refused after %v: %v", idle*2-time.Until(deadline), err)
		}
		if live, err := s.Live(ctx, streamID); err != nil || !live {
			t.Fatalf("streaming session not live: %v, %v", live, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := s.Principal(ctx, idler); !errors.Is(err, authz.ErrUnauthenticated) {
		t.Fatalf("session idle for %v (idle timeout %v) = %v, want unauthenticated", idle*2, idle, err)
	}

	// Now stop using them all.
	time.Sleep(idle + 200*time.Millisecond)
	if _, err := s.Principal(ctx, active); !errors.Is(err, authz.ErrUnauthenticated) {
		t.Fatalf("session after idling = %v, want unauthenticated", err)
	}
	if live, err := s.Live(ctx, streamID); err != nil || live {
		t.Fatalf("Live after idling = %v, %v; want false", live, err)
	}

	// Without idle expiry, sessions only end at their absolute expiry.
	plain := NewSessions(testStore(t), SessionsConfig{TTL: 700 * time.Millisecond, CacheTTL: 50 * time.Millisecond})
	tok, exp, err := plain.Create(ctx, Identity{ID: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d <= 0 || d > 700*time.Millisecond {
		t.Fatalf("expiry in %v, want within the 700ms ttl", d)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := plain.Principal(ctx, tok); err != nil {
		t.Fatalf("session before its expiry = %v", err)
	}
	time.Sleep(time.Until(exp) + 50*time.Millisecond)
	if _, err := plain.Principal(ctx, tok); !errors.Is(err, authz.ErrUnauthenticated) {
		t.Fatalf("session after its expiry = %v", err)
	}
}

// TestIdleSessionRefusedOnCalls checks the idle timeout as a client sees
// it: a call with an idle session's token is unauthenticated.
func TestIdleSessionRefusedOnCalls(t *testing.T) {
	t.Parallel()
	srv := newAuthServer(t, authServerConfig{
		login:    None{},
		sessions: SessionsConfig{Idle: 400 * time.Millisecond, TouchEvery: 50 * time.Millisecond, CacheTTL: 20 * time.Millisecond},
	})
	ctx := context.Background()
	res, err := srv.client.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	whoami := func() error {
		req := connect.NewRequest(&authv1.WhoAmIRequest{})
		bearerHeader(req.Header(), res.Msg.GetToken())
		_, err := srv.client.WhoAmI(ctx, req)
		return err
	}
	if err := whoami(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if err := whoami(); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("WhoAmI with an idle session = %v, want unauthenticated", err)
	}
}

func TestSessionsRevokeUser(t *testing.T) {
	t.Parallel()
	s := NewSessions(testStore(t), SessionsConfig{CacheTTL: time.Minute})
	ctx := context.Background()
	var alice []string
	var watched []<-chan struct{}
	for range 2 {
		tok, _, err := s.Create(ctx, Identity{ID: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		p, err := s.Principal(ctx, tok) // cached for a minute
		if err != nil {
			t.Fatal(err)
		}
		ch, stop := s.Watch(p.SessionID)
		defer stop()
		alice = append(alice, tok)
		watched = append(watched, ch)
	}
	bob, _, err := s.Create(ctx, Identity{ID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	bp, err := s.Principal(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	bobEnded, stop := s.Watch(bp.SessionID)
	defer stop()

	n, err := s.RevokeUser(ctx, "alice")
	if err != nil || n != 2 {
		t.Fatalf("RevokeUser(alice) = %d, %v; want 2", n, err)
	}
	for i, tok := range alice {
		if _, err := s.Principal(ctx, tok); !errors.Is(err, authz.ErrUnauthenticated) {
			t.Fatalf("alice's session %d after RevokeUser = %v (cache not dropped?)", i, err)
		}
		select {
		case <-watched[i]:
		case <-time.After(time.Second):
			t.Fatalf("alice's stream %d not ended", i)
		}
	}
	if _, err := s.Principal(ctx, bob); err != nil {
		t.Fatalf("bob's session after RevokeUser(alice) = %v", err)
	}
	select {
	case <-bobEnded:
		t.Fatal("bob's stream ended")
	default:
	}
	if n, err := s.RevokeUser(ctx, "alice"); err != nil || n != 0 {
		t.Fatalf("second RevokeUser(alice) = %d, %v; want 0", n, err)
	}
}

// Streams of one session share its Live answer for CacheTTL: a revocation
// by another instance (here: straight in the store) is seen once the
// answer is older than that; one on this instance at once.
func TestSessionsLiveShared(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	store := testStore(t)
	s := NewSessions(store, SessionsConfig{CacheTTL: ttl})
	ctx := context.Background()
	id := func(tok string) int64 {
		p, err := s.Principal(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		return p.SessionID
	}
	live := func(id int64) bool {
		t.Helper()
		ok, err := s.Live(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	a, _, err := s.Create(ctx, Identity{ID: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Create(ctx, Identity{ID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, here := id(a), id(b)
	if !live(elsewhere) || !live(here) {
		t.Fatal("new sessions not live")
	}
	start := time.Now()
	if err := (sessionRows{store: store}).RevokeSession(ctx, elsewhere); err != nil {
		t.Fatal(err)
	}
	if !live(elsewhere) && time.Since(start) < ttl/2 {
		t.Fatal("Live read Postgres again within CacheTTL")
	}
	time.Sleep(ttl)
	if live(elsewhere) {
		t.Fatal("session revoked elsewhere still live after CacheTTL")
	}
	if err := s.Revoke(ctx, here); err != nil {
		t.Fatal(err)
	}
	if live(here) {
		t.Fatal("session revoked here still live")
	}
}
