package engine

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// recordEv is a hub event of key@version committed at at.
func recordEv(key string, version, seq int64, at time.Time) *hubEvent {
	msg := &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{
		Record: &syncv1.Record{Key: key, Scope: "s", Version: version, Seq: seq, UpdatedAt: timestamppb.New(at)},
	}}}
	return &hubEvent{info: eventInfo{key: key, scope: "s", version: version, seq: seq}, ev: NewEvent(msg)}
}

// A change's time to last delivery is recorded once, when the last of the
// streams it was handed to is done with it: one sent it, one had it
// coalesced away by a later version, one ended with it still queued.
func TestDeliveryTimedAtTheLastStream(t *testing.T) {
	t.Parallel()
	h := &Hub{}
	sent, coalescing, ending := newFeed(8), newFeed(2), newFeed(8)
	e := recordEv("a", 1, 1, time.Now().Add(-30*time.Millisecond))
	d := h.newDelivery(e, 3, nil)
	for _, f := range []*feed{sent, coalescing, ending} {
		f.offer(e, d)
	}
	count := func() uint64 { return h.Stats().LastDelivery.Count }

	items, _ := sent.take(nil)
	for _, it := range items {
		it.d.done(it.coalesced)
	}
	coalescing.offer(recordEv("a", 2, 2, time.Now()), nil)
	coalescing.offer(recordEv("b", 1, 3, time.Now()), nil) // full: a@1 is coalesced away
	if n := count(); n != 0 {
		t.Fatalf("recorded %d deliveries with a stream still holding the change", n)
	}
	ending.discard()
	hist := h.Stats().LastDelivery
	if hist.Count != 1 {
		t.Fatalf("recorded %d deliveries, want 1", hist.Count)
	}
	if hist.Sum < 0.03 || hist.Buckets[0.025] != 0 || hist.Buckets[0.05] != 1 {
		t.Errorf("histogram %+v, want one observation of at least 30ms", hist)
	}
	if c := d.coalesced.Load(); c != 1 {
		t.Errorf("coalesced = %d, want 1", c)
	}
}

// On a live Hub, a change reaching a record stream and a Watch (an access
// watch) on its scope is timed once both are done with it.
func TestDeliveryTimedOverStreamsAndWatches(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	streamer := NewStreamer(r.store, r.hub, StreamerConfig{})
	sr := r.open(t, StreamerConfig{}, Targets{Scopes: []ScopeTarget{{Scope: "room/1"}}}, nil)
	sr.expect("synced room/1@0")
	ctx, cancel := context.WithCancel(context.Background())
	evals := make(chan struct{}, 10)
	watched := make(chan error, 1)
	go func() {
		watched <- streamer.Watch(ctx, func(context.Context) ([]Dep, error) {
			evals <- struct{}{}
			return []Dep{{Key: "doc/1", Scope: "room/1"}}, nil
		}, func() error { return nil })
	}()
	t.Cleanup(func() {
		cancel()
		<-watched
	})
	<-evals // joined

	put(t, r.store, "doc/1", "room/1", "one")
	sr.expect("record doc/1 v1 s1")
	select {
	case <-evals:
	case <-time.After(wait):
		t.Fatal("the watch did not evaluate again")
	}
	eventually(t, "the delivery timed", func() bool { return r.hub.Stats().LastDelivery.Count == 1 })
}
