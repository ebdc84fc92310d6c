package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// engine is a Store, Publisher, Hub and Streamer on a database and NATS
// server of the test's own.
type engine struct {
	store    *Store
	streamer *Streamer
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	pool := testPool(t)
	_, nc := testNATS(t)
	prefix := fmt.Sprintf("rv%d", time.Now().UnixNano())
	pub := NewPublisher(nc, pool, PublisherConfig{Prefix: prefix})
	runT(t, pub)
	store := NewStore(pool, StoreConfig{Notifier: pub})
	hub := NewHub(nc, store, HubConfig{Prefix: prefix})
	runT(t, hub)
	return &engine{store: store, streamer: NewStreamer(store, hub, StreamerConfig{Heartbeat: time.Hour})}
}

// grantGuard allows the target while the record grantKey exists.
func grantGuard(s *Store, grantKey, grantScope string) ([]Dep, Guard) {
	deps := []Dep{{Key: grantKey, Scope: grantScope}}
	return deps, func(ctx context.Context) ([]Dep, bool, error) {
		recs, err := s.Records(ctx, []string{grantKey})
		if err != nil {
			return nil, false, err
		}
		return deps, len(recs) == 1 && !recs[0].Deleted, nil
	}
}

// runStream runs a stream in the background and collects its events.
func runStream(t *testing.T, e *engine, targets Targets) (<-chan *syncv1.SubscribeResponse, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan *syncv1.SubscribeResponse, 10000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		_ = e.streamer.Stream(ctx, targets, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
			ch <- ev
			return nil
		}))
	}()
	stop := func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return ch, stop
}

// Writes race the revocation: a grant that lives in the target's own scope
// is deleted while messages keep coming. The stream gets `revoked` and no
// change committed after the revoking change, ever.
func TestRevocationInScopeNeverLeaks(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	put(t, e.store, "grant/room", "room", "alice")
	deps, guard := grantGuard(e.store, "grant/room", "room")
	events, stop := runStream(t, e, Targets{Scopes: []ScopeTarget{{Scope: "room", Deps: deps, Guard: guard}}})

	var revokeSeq int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 120; i++ {
			put(t, e.store, fmt.Sprintf("msg/%d", i), "room", "hello")
			if i == 60 {
				revokeSeq = del(t, e.store, "grant/room").Seq
			}
		}
	}()
	wg.Wait()

	var lastSeq int64
	revoked := false
	deadline := time.After(wait)
	for !revoked {
		select {
		case ev := <-events:
			if r := ev.GetRevoked(); r != nil {
				if r.GetScope() != "room" {
					t.Fatalf("revoked %v, want scope room", r)
				}
				revoked = true
				continue
			}
			if info, ok := infoOf(ev); ok {
				if info.seq > revokeSeq {
					t.Fatalf("seq %d delivered after the revoking change (seq %d)", info.seq, revokeSeq)
				}
				lastSeq = info.seq
			}
		case <-deadline:
			t.Fatalf("no revoked event; last seq %d, revoking seq %d", lastSeq, revokeSeq)
		}
	}
	// Nothing more of the target afterwards, even as writes go on.
	put(t, e.store, "msg/after", "room", "late")
	time.Sleep(300 * time.Millisecond)
	stop()
	for ev := range events {
		if _, ok := infoOf(ev); ok {
			t.Fatalf("event after revoked: %v", ev)
		}
	}
	if lastSeq != revokeSeq {
		// The revoking change itself may or may not be delivered, but
		// everything before it must be.
		if lastSeq != revokeSeq-1 {
			t.Fatalf("last delivered seq %d, want %d or %d", lastSeq, revokeSeq-1, revokeSeq)
		}
	}
}

// A grant in another scope revokes within a bounded time; after the
// revoked event nothing of the target is sent.
func TestRevocationAcrossScopes(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	put(t, e.store, "grant/alice", "grants", "yes")
	put(t, e.store, "doc/1", "docs", "v1")
	deps, guard := grantGuard(e.store, "grant/alice", "grants")
	events, stop := runStream(t, e, Targets{Records: []RecordTarget{{Key: "doc/1", Scope: "docs", Deps: deps, Guard: guard}}})

	next := func() *syncv1.SubscribeResponse {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(wait):
			t.Fatal("no event")
			return nil
		}
	}
	if ev := next(); ev.GetRecord().GetRecord().GetVersion() != 1 {
		t.Fatalf("snapshot = %v", ev)
	}
	if next().GetSynced() == nil {
		t.Fatal("want synced")
	}
	put(t, e.store, "doc/1", "docs", "v2")
	if ev := next(); ev.GetRecord().GetRecord().GetVersion() != 2 {
		t.Fatalf("live = %v", ev)
	}
	start := time.Now()
	del(t, e.store, "grant/alice")
	if ev := next(); ev.GetRevoked().GetKey() != "doc/1" {
		t.Fatalf("want revoked doc/1, got %v", ev)
	}
	t.Logf("revoked %v after the revoking commit", time.Since(start))
	put(t, e.store, "doc/1", "docs", "v3")
	time.Sleep(300 * time.Millisecond)
	stop()
	for ev := range events {
		t.Fatalf("event after revoked: %v", ev)
	}
}

// Access lost between the handler's check and the stream's start is caught
// by the re-check after joining: the target is revoked before any data.
func TestRevocationBeforeCatchUp(t *testing.T) {
	t.Parallel()
	e := newEngine(t)
	put(t, e.store, "doc/1", "docs", "secret")
	deps, _ := grantGuard(e.store, "grant/bob", "grants") // never granted
	_, guard := grantGuard(e.store, "grant/bob", "grants")
	events, _ := runStream(t, e, Targets{Records: []RecordTarget{{Key: "doc/1", Scope: "docs", Deps: deps, Guard: guard}}})
	select {
	case ev := <-events:
		if ev.GetRevoked().GetKey() != "doc/1" {
			t.Fatalf("first event %v, want revoked before any data", ev)
		}
	case <-time.After(wait):
		t.Fatal("no event")
	}
	select {
	case ev := <-events:
		if ev.GetSynced() == nil {
			t.Fatalf("after revoked: %v, want only synced", ev)
		}
	case <-time.After(wait):
		t.Fatal("no synced")
	}
}
