package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// rig is one instance's engine on a database and NATS server of its own.
type rig struct {
	pool   *pgxpool.Pool
	nats   *testenv.NATS
	nc     *nats.Conn
	prefix string
	store  *Store // publishes every change after commit
	quiet  *Store // publishes nothing: its changes look lost on the way to NATS
	hub    *Hub
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{pool: testPool(t), prefix: testenv.Prefix()}
	r.nats, r.nc = testNATS(t)
	pub := NewPublisher(r.nc, r.pool, PublisherConfig{Prefix: r.prefix})
	runT(t, pub)
	r.store = NewStore(r.pool, StoreConfig{Notifier: pub})
	r.hub = NewHub(r.nc, r.store, HubConfig{Prefix: r.prefix})
	runT(t, r.hub)
	r.quiet = NewStore(r.pool, StoreConfig{})
	return r
}

// run is one running stream.
type run struct {
	t      *testing.T
	events chan *syncv1.SubscribeResponse
	done   chan error
	synced bool // versions saw the SyncedEvent
}

// open starts a stream of targets. send, if not nil, runs after each event
// is recorded (to slow the consumer down). The stream is ended when the test
// ends.
func (r *rig) open(t *testing.T, cfg StreamerConfig, targets Targets, send func(ctx context.Context, ev *syncv1.SubscribeResponse) error) *run {
	t.Helper()
	streamer := NewStreamer(r.store, r.hub, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	sr := &run{t: t, events: make(chan *syncv1.SubscribeResponse, 10000), done: make(chan error, 1)}
	go func() {
		sr.done <- streamer.Stream(ctx, targets, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
			select {
			case sr.events <- ev:
			default:
				return errors.New("test event buffer full")
			}
			if send != nil {
				return send(ctx, ev)
			}
			return nil
		}))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-sr.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Stream ended with %v, want context.Canceled", err)
			}
		case <-time.After(wait):
			t.Error("Stream did not end after its context was canceled")
		}
	})
	return sr
}

// next returns the next event other than a heartbeat, described.
func (sr *run) next() string {
	sr.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case ev := <-sr.events:
			if ev.GetHeartbeat() != nil {
				continue
			}
			return describeEvent(ev)
		case err := <-sr.done:
			sr.t.Fatalf("stream ended early: %v", err)
		case <-timeout:
			sr.t.Fatal("timed out waiting for a stream event")
		}
	}
}

// expect checks the next events, in order.
func (sr *run) expect(want ...string) {
	sr.t.Helper()
	for i, w := range want {
		if got := sr.next(); got != w {
			sr.t.Fatalf("event %d = %q, want %q", i, got, w)
		}
	}
}

// quiet fails if an event other than a heartbeat arrives within d.
func (sr *run) quiet(d time.Duration) {
	sr.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-sr.events:
			if ev.GetHeartbeat() == nil {
				sr.t.Fatalf("unexpected event %q", describeEvent(ev))
			}
		case <-timeout:
			return
		}
	}
}

func describeEvent(ev *syncv1.SubscribeResponse) string {
	switch e := ev.GetEvent().(type) {
	case *syncv1.SubscribeResponse_Record:
		r := e.Record.GetRecord()
		s := fmt.Sprintf("record %s v%d s%d", r.GetKey(), r.GetVersion(), r.GetSeq())
		if e.Record.GetSnapshot() {
			s += " snapshot"
		}
		if e.Record.GetCoalesced() {
			s += " coalesced"
		}
		return s
	case *syncv1.SubscribeResponse_Removed:
		return fmt.Sprintf("removed %s v%d s%d", e.Removed.GetKey(), e.Removed.GetVersion(), e.Removed.GetSeq())
	case *syncv1.SubscribeResponse_Synced:
		s := "synced"
		for _, sc := range e.Synced.GetScopes() {
			s += fmt.Sprintf(" %s@%d", sc.GetScope(), sc.GetAfterSeq())
		}
		return s
	case *syncv1.SubscribeResponse_Reset_:
		return fmt.Sprintf("reset %s horizon %d", e.Reset_.GetScope(), e.Reset_.GetHorizonSeq())
	case *syncv1.SubscribeResponse_Revoked:
		return fmt.Sprintf("revoked %s%s", e.Revoked.GetKey(), e.Revoked.GetScope())
	case *syncv1.SubscribeResponse_Heartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("unknown %v", ev)
}

func scopeTargets(scope string, afterSeq int64) Targets {
	return Targets{Scopes: []ScopeTarget{{Scope: scope, AfterSeq: afterSeq}}}
}

// writeHistory writes seqs 1..5 of channel/1: a@1 b@1 a@2 c@1, c deleted.
func writeHistory(t *testing.T, s *Store) {
	t.Helper()
	put(t, s, "msg/a", "channel/1", "a1")
	put(t, s, "msg/b", "channel/1", "b1")
	put(t, s, "msg/a", "channel/1", "a2")
	put(t, s, "msg/c", "channel/1", "c1")
	del(t, s, "msg/c")
}

func TestStreamScopeSnapshotThenLive(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	writeHistory(t, r.store)

	sr := r.open(t, StreamerConfig{}, scopeTargets("channel/1", 0), nil)
	// The snapshot holds the live records in seq order; the cursor is the
	// scope's seq even though the newest change was a delete.
	sr.expect(
		"record msg/b v1 s2 snapshot",
		"record msg/a v2 s3 snapshot",
		"synced channel/1@5",
	)

	put(t, r.store, "msg/b", "channel/1", "b2")
	put(t, r.store, "msg/d", "channel/1", "d1")
	del(t, r.store, "msg/a")
	put(t, r.store, "msg/d", "channel/1", "d2")
	sr.expect(
		"record msg/b v2 s6",
		"record msg/d v1 s7",
		"removed msg/a v3 s8",
		"record msg/d v2 s9",
	)
	// Other scopes never reach this stream.
	put(t, r.store, "msg/x", "channel/2", "x")
	sr.quiet(300 * time.Millisecond)
}

func TestStreamResumesAfterSeq(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	writeHistory(t, r.store)

	from2 := r.open(t, StreamerConfig{}, scopeTargets("channel/1", 2), nil)
	from2.expect(
		"record msg/a v2 s3",
		"record msg/c v1 s4",
		"removed msg/c v2 s5",
		"synced channel/1@5",
	)
	upToDate := r.open(t, StreamerConfig{}, scopeTargets("channel/1", 5), nil)
	upToDate.expect("synced channel/1@5")
	// A cursor the server never issued starts over.
	ahead := r.open(t, StreamerConfig{}, scopeTargets("channel/1", 99), nil)
	ahead.expect(
		"reset channel/1 horizon 0",
		"record msg/b v1 s2 snapshot",
		"record msg/a v2 s3 snapshot",
		"synced channel/1@5",
	)

	put(t, r.store, "msg/a", "channel/1", "a3")
	for _, sr := range []*run{from2, upToDate, ahead} {
		sr.expect("record msg/a v3 s6")
	}
}

func TestStreamResetBelowHorizon(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	for _, k := range []string{"k/a", "k/b", "k/c", "k/a", "k/b", "k/c"} {
		put(t, r.quiet, k, "board/1", "x")
	}
	relay := NewRelay(r.nc, r.pool, RelayConfig{Prefix: r.prefix, KeepPerScope: 2})
	if n, err := relay.RunOnce(ctxT(t), 0); err != nil || n != 6 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	if n, err := relay.Prune(ctxT(t)); err != nil || n != 4 {
		t.Fatalf("Prune = %d, %v; want 4 (seqs 1..4)", n, err)
	}

	behind := r.open(t, StreamerConfig{}, scopeTargets("board/1", 1), nil)
	behind.expect(
		"reset board/1 horizon 4",
		"record k/a v2 s4 snapshot",
		"record k/b v2 s5 snapshot",
		"record k/c v2 s6 snapshot",
		"synced board/1@6",
	)
	// A cursor at the horizon still resumes from history.
	atHorizon := r.open(t, StreamerConfig{}, scopeTargets("board/1", 4), nil)
	atHorizon.expect(
		"record k/b v2 s5",
		"record k/c v2 s6",
		"synced board/1@6",
	)
	put(t, r.store, "k/a", "board/1", "x")
	behind.expect("record k/a v3 s7")
	atHorizon.expect("record k/a v3 s7")
}

func TestStreamRecordTarget(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	put(t, r.store, "team/1", "org/1", "v1")
	put(t, r.store, "team/2", "org/1", "other")
	put(t, r.store, "team/1", "org/1", "v2")
	put(t, r.store, "team/1", "org/1", "v3")
	put(t, r.store, "team/9", "org/1", "gone")
	del(t, r.store, "team/9")

	// A client resuming at a version gets every version after it.
	behind := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "team/1", Scope: "org/1", Version: 2}}}, nil)
	behind.expect("record team/1 v3 s4", "synced")
	further := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "team/1", Scope: "org/1", Version: 1}}}, nil)
	further.expect("record team/1 v2 s3", "record team/1 v3 s4", "synced")
	current := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "team/1", Scope: "org/1", Version: 3}}}, nil)
	current.expect("synced")
	// A client that never saw a record learns nothing of its tombstone.
	deleted := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "team/9", Scope: "org/1"}}}, nil)
	deleted.expect("synced")

	put(t, r.store, "team/2", "org/1", "other 2") // same scope, another record
	put(t, r.store, "team/1", "org/1", "v4")
	behind.expect("record team/1 v4 s8")
	current.expect("record team/1 v4 s8")
	deleted.quiet(300 * time.Millisecond)

	// Versions no longer in the history: the current version, marked as
	// skipping some.
	if _, err := r.pool.Exec(ctxT(t), `DELETE FROM changes WHERE key = 'team/1' AND version = 2`); err != nil {
		t.Fatal(err)
	}
	pruned := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "team/1", Scope: "org/1", Version: 1}}}, nil)
	pruned.expect("record team/1 v4 s8 snapshot coalesced", "synced")
}

// TestStreamRecordInsideScope: a record target whose scope is also a target
// does not move the scope's cursor past the scope's own earlier changes.
func TestStreamRecordInsideScope(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	writeHistory(t, r.store)                          // channel/1 seqs 1..5
	put(t, r.store, "channel/1", "channel/1", "meta") // seq 6: the scope's own record

	sr := r.open(t, StreamerConfig{}, Targets{
		Records: []RecordTarget{{Key: "channel/1", Scope: "channel/1"}},
		Scopes:  []ScopeTarget{{Scope: "channel/1", AfterSeq: 2}},
	}, nil)
	sr.expect(
		"record msg/a v2 s3",
		"record msg/c v1 s4",
		"removed msg/c v2 s5",
		"record channel/1 v1 s6",
		"synced channel/1@6",
	)
	put(t, r.store, "msg/a", "channel/1", "a3")
	sr.expect("record msg/a v3 s7")
	sr.quiet(200 * time.Millisecond)
}

// TestStreamFillsLostChange: a change whose publication was lost is read
// from Postgres as soon as a later change of its scope reveals the gap.
func TestStreamFillsLostChange(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sr := r.open(t, StreamerConfig{}, scopeTargets("channel/g", 0), nil)
	sr.expect("synced channel/g@0")

	put(t, r.quiet, "msg/1", "channel/g", "lost") // seq 1 never reaches NATS
	put(t, r.store, "msg/2", "channel/g", "seen") // seq 2 does
	sr.expect("record msg/1 v1 s1", "record msg/2 v1 s2")

	// The relay sends seq 1 late: the stream has it already.
	eventually(t, "seq 2 to be marked published", func() bool {
		rows := changeRows(t, r.pool, "channel/g")
		return len(rows) == 2 && !rows[0].Published && rows[1].Published
	})
	relay := NewRelay(r.nc, r.pool, RelayConfig{Prefix: r.prefix})
	if n, err := relay.RunOnce(ctxT(t), 0); err != nil || n != 1 {
		t.Fatalf("RunOnce = %d, %v; want 1", n, err)
	}
	sr.quiet(300 * time.Millisecond)
	put(t, r.store, "msg/1", "channel/g", "again")
	sr.expect("record msg/1 v2 s3")
}

// TestStreamResyncsAfterNATSRestart: changes committed while NATS was down
// reach the stream after the reconnect, without waiting for a later change.
func TestStreamResyncsAfterNATSRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sr := r.open(t, StreamerConfig{}, scopeTargets("channel/n", 0), nil)
	sr.expect("synced channel/n@0")
	put(t, r.store, "msg/1", "channel/n", "before")
	sr.expect("record msg/1 v1 s1")

	r.nats.Stop()
	put(t, r.quiet, "msg/2", "channel/n", "during")
	r.nats.Start()
	sr.expect("record msg/2 v1 s2")

	put(t, r.store, "msg/3", "channel/n", "after")
	sr.expect("record msg/3 v1 s3")
}

// feedOf returns the feed of the only stream on scope.
func feedOf(t *testing.T, h *Hub, scope string) *feed {
	t.Helper()
	var f *feed
	eventually(t, "the stream to join "+scope, func() bool {
		h.mu.RLock()
		defer h.mu.RUnlock()
		if hs := h.scopes[scope]; hs != nil && len(hs.feeds) == 1 {
			for ff := range hs.feeds {
				f = ff
			}
			return true
		}
		return false
	})
	return f
}

// TestStreamSlowConsumer holds a stream's first live send while many
// changes arrive: the stream coalesces (few keys) or drops its buffer and
// re-reads (many keys), and always ends with every key's final version.
func TestStreamSlowConsumer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		keys     int
		overflow bool
	}{
		{"coalesce", 3, false},
		{"overflow", 6, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const rounds = 8
			r := newRig(t)
			scope := "channel/slow"
			release := make(chan struct{})
			sr := r.open(t, StreamerConfig{Buffer: 4}, scopeTargets(scope, 0),
				func(ctx context.Context, ev *syncv1.SubscribeResponse) error {
					if ev.GetRecord().GetRecord().GetSeq() != 1 {
						return nil
					}
					select { // the client stops reading after the first change
					case <-release:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			sr.expect("synced " + scope + "@0")
			f := feedOf(t, r.hub, scope)

			put(t, r.store, "k/0", scope, "first")
			sr.expect("record k/0 v1 s1") // the stream now blocks in send
			for round := 1; round <= rounds; round++ {
				for k := range tt.keys {
					if round == 1 && k == 0 {
						continue // k/0 v1 is the change above
					}
					put(t, r.store, fmt.Sprintf("k/%d", k), scope, "x")
				}
			}
			total := int64(rounds * tt.keys)
			final := int64(rounds)

			// Wait until the Hub has offered everything to the full buffer.
			eventually(t, "the buffer to absorb the burst", func() bool {
				f.mu.Lock()
				defer f.mu.Unlock()
				if tt.overflow {
					return f.overflow
				}
				latest := map[string]int64{}
				for _, it := range f.items {
					latest[it.e.info.key] = it.e.info.version
				}
				return f.coalesces > 0 && len(latest) == tt.keys && latest["k/0"] == final && latest[fmt.Sprintf("k/%d", tt.keys-1)] == final
			})
			close(release)

			have := map[string]int64{"k/0": 1}
			lastSeq := int64(1)
			events, coalesced := 0, 0
			for done := 0; done < tt.keys; {
				got := sr.next()
				var key string
				var version, seq int64
				if _, err := fmt.Sscanf(got, "record %s v%d s%d", &key, &version, &seq); err != nil {
					t.Fatalf("unexpected event %q", got)
				}
				events++
				if strings.HasSuffix(got, " coalesced") {
					coalesced++
				}
				if version <= have[key] || seq <= lastSeq {
					t.Fatalf("event %q after %s v%d, seq %d: versions and seqs must grow", got, key, have[key], lastSeq)
				}
				have[key], lastSeq = version, seq
				if version == final {
					done++
				}
			}
			if coalesced == 0 {
				t.Errorf("no event marked coalesced")
			}
			if int64(events) >= total-1 {
				t.Errorf("%d events for %d changes: nothing was coalesced", events, total-1)
			}
			if lastSeq != total {
				t.Errorf("stream ended at seq %d, want %d", lastSeq, total)
			}
			sr.quiet(200 * time.Millisecond)

			// Back to normal: the next change is sent as is.
			put(t, r.store, "k/0", scope, "after")
			sr.expect(fmt.Sprintf("record k/0 v%d s%d", final+1, total+1))
		})
	}
}

// TestStreamLeavesHub checks that an ended stream releases its NATS
// subscriptions.
func TestStreamLeavesHub(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	streamer := NewStreamer(r.store, r.hub, StreamerConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	synced := make(chan struct{}, 1)
	go func() {
		done <- streamer.Stream(ctx, Targets{
			Scopes:  []ScopeTarget{{Scope: "a"}, {Scope: "b"}},
			Records: []RecordTarget{{Key: "x", Scope: "c"}},
		}, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
			if ev.GetSynced() != nil {
				synced <- struct{}{}
			}
			return nil
		}))
	}()
	select {
	case <-synced:
	case <-time.After(wait):
		t.Fatal("stream did not sync")
	}
	if n := r.hub.Scopes(); n != 3 {
		t.Fatalf("hub holds %d scopes, want 3", n)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Stream = %v, want context.Canceled", err)
		}
	case <-time.After(wait):
		t.Fatal("stream did not end")
	}
	if n := r.hub.Scopes(); n != 0 {
		t.Fatalf("hub holds %d scopes after the stream ended, want 0", n)
	}
}
