package engine

import (
	"context"
	"testing"
)

// A stream that enters while the user's last stream on the scope is
// leaving keeps its presence row: the leave does not delete it.
func TestPresenceReenterDuringLeave(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	p := NewPresence(r.pool, r.hub, PresenceConfig{})
	runT(t, p)
	ctx := ctxT(t)
	leave1, err := p.Enter(ctx, "channel/x", "alice")
	if err != nil {
		t.Fatal(err)
	}
	var leave2 func()
	p.testHookLeave = func() {
		p.testHookLeave = nil
		leave2, err = p.Enter(context.Background(), "channel/x", "alice")
		if err != nil {
			t.Error(err)
		}
	}
	leave1() // the last stream leaves; a new one enters in the middle
	online, err := p.Online(ctx, "channel/x")
	if err != nil {
		t.Fatal(err)
	}
	if len(online) != 1 || online[0] != "alice" {
		t.Fatalf("online %v while alice has a stream open, want [alice]", online)
	}
	leave2()
	if online, _ := p.Online(ctx, "channel/x"); len(online) != 0 {
		t.Fatalf("online %v after the last stream left", online)
	}
}
