package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Sliding expiry: with a short idle timeout, a session used regularly (by
// calls or by an open stream) outlives it, an idle one expires, and
// nothing outlives the absolute lifetime.

// cacheTTL is the default time an instance keeps a resolved session.
const cacheTTL = 2 * time.Second

func whoAmI(t *testing.T, c *client) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	return err
}

func TestSessionIdleSliding(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	cfg := baseConfig(t)
	cfg.SessionIdle = idle
	app := startApp(t, cfg)
	used, idler := login(t, app.url, "alice"), login(t, app.url, "bob")

	// alice calls every 300 ms for three idle timeouts; bob does nothing.
	for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if err := whoAmI(t, used); err != nil {
			t.Fatalf("a session in use was refused: %v", err)
		}
	}
	if err := whoAmI(t, idler); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a session idle for %v (idle timeout %v) = %v, want unauthenticated", 3*idle, idle, err)
	}
	// Then alice stops: her session goes idle too.
	time.Sleep(idle + cacheTTL + 500*time.Millisecond)
	if err := whoAmI(t, used); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the used session, idle for longer than its timeout, = %v, want unauthenticated", err)
	}
}

func TestSessionIdleOpenStreamRenews(t *testing.T) {
	t.Parallel()
	const idle = 2 * time.Second
	cfg := baseConfig(t)
	cfg.SessionIdle = idle
	app := startApp(t, cfg)
	c := login(t, app.url, "alice")

	// No call for three idle timeouts, only an open stream: its session
	// checks are use, so the session lives and the stream is not ended.
	ev := c.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	ev.untilSynced(t)
	quiet := time.After(3 * idle)
	for waiting := true; waiting; {
		select {
		case m, ok := <-ev.ch:
			if !ok {
				t.Fatalf("the stream of a session in use ended: %v", <-ev.err)
			}
			if m.GetHeartbeat() == nil {
				t.Fatalf("unexpected event %v", m)
			}
		case <-quiet:
			waiting = false
		}
	}
	// The session is alive for calls, and the same stream delivers.
	v := c.setAvatar(t, "https://example.com/renewed.png")
	for {
		m := ev.next(t, 10*time.Second)
		if r := m.GetRecord().GetRecord(); r.GetKey() == "user/alice" && r.GetVersion() >= v.GetVersion() {
			if got := avatarOf(t, r); got != "https://example.com/renewed.png" {
				t.Fatalf("avatar = %q", got)
			}
			break
		}
	}
	// Once the stream is gone the session idles out.
	ev.cancel()
	if err := ev.end(t, 10*time.Second); codeOf(err) != connect.CodeCanceled {
		t.Logf("stream ended with %v", err)
	}
	time.Sleep(idle + cacheTTL + 500*time.Millisecond)
	if err := whoAmI(t, c); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the session, idle after its stream closed, = %v, want unauthenticated", err)
	}
}

func TestSessionAbsoluteLimit(t *testing.T) {
	t.Parallel()
	const ttl = 4 * time.Second
	cfg := baseConfig(t)
	cfg.SessionTTL = ttl
	cfg.SessionIdle = time.Second
	app := startApp(t, cfg)
	c := login(t, app.url, "alice")
	loggedIn := time.Now()

	// In use all the time, by calls and a stream: it still ends at ttl.
	ev := c.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	ev.untilSynced(t)
	var refused time.Duration
	for refused == 0 && time.Since(loggedIn) < ttl+5*time.Second {
		if err := whoAmI(t, c); err != nil {
			if codeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("WhoAmI = %v", err)
			}
			refused = time.Since(loggedIn)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if refused < ttl-time.Second || refused > ttl+time.Second {
		t.Fatalf("a session in constant use was refused %v after login, want at its absolute lifetime %v", refused, ttl)
	}
	if err := ev.end(t, 5*time.Second); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("the stream at the absolute limit ended with %v, want unauthenticated", err)
	}
	if ended := time.Since(loggedIn); ended > ttl+2*time.Second {
		t.Errorf("the stream ended %v after login, want by about %v", ended, ttl)
	}
}
