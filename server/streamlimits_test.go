package server

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/services/auth"
)

// A session and a user hold at most the configured streams and targets on
// an instance: past a limit Subscribe ends with resource_exhausted, saying
// which limit; a closed stream gives its share back; other users are not
// affected.
func TestStreamLimits(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.StreamLimits = auth.StreamLimits{PerSession: 2, PerPrincipal: 3, TargetsPerPrincipal: 5}
	app := startApp(t, cfg)
	a1 := login(t, app.url, "alice")
	a2 := login(t, app.url, "alice") // a second session of the same user
	bob := login(t, app.url, "bob")
	a1.setAvatar(t, "https://example.com/a.png")
	bob.setAvatar(t, "https://example.com/b.png")
	one := &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}
	bobs := &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/bob"}}}

	open := func(c *client, req *syncv1.SubscribeRequest) *events {
		t.Helper()
		ev := c.subscribe(t, req)
		ev.untilSynced(t)
		return ev
	}
	refused := func(c *client, req *syncv1.SubscribeRequest, limit string) {
		t.Helper()
		err := c.subscribe(t, req).end(t, 10*time.Second)
		if codeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), limit) {
			t.Fatalf("stream past the %s limit ended with %v, want resource_exhausted naming it", limit, err)
		}
	}

	s1 := open(a1, one)
	open(a1, one)
	refused(a1, one, "this session") // 3rd stream of session 1
	open(a2, one)                    // 3rd stream of alice
	refused(a2, one, "this user")    // 4th stream of alice
	open(bob, bobs)                  // bob is not affected

	s1.cancel() // a stream closed gives its share back
	if err := s1.end(t, 10*time.Second); codeOf(err) != connect.CodeCanceled {
		t.Fatalf("closed stream: %v", err)
	}
	var s4 *events
	deadline := time.Now().Add(10 * time.Second)
	for s4 == nil { // the server notices the cancel shortly after the client
		ev := a2.subscribe(t, one)
		m := <-ev.ch
		switch {
		case m != nil:
			s4 = ev
		case time.Now().After(deadline):
			t.Fatalf("no stream after one closed: %v", <-ev.err)
		default:
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Targets: bob follows 1; 5 more would pass 5.
	var five []*syncv1.RecordTarget
	for range 5 {
		five = append(five, &syncv1.RecordTarget{Key: "user/bob"})
	}
	refused(bob, &syncv1.SubscribeRequest{Records: five}, "records and scopes")
	open(bob, &syncv1.SubscribeRequest{Records: five[:4]})
}
