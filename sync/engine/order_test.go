package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// TestStreamSubscribeRace commits a change at each point of a new stream
// where it could fall between the catch-up and the live feed: while the
// Hub sets up the scope's subscription, after the Hub join, and after the
// catch-up read. Each is delivered exactly once, for record and scope
// targets, whether the stream is the scope's first on this instance or
// joins a scope the Hub already follows.
func TestStreamSubscribeRace(t *testing.T) {
	t.Parallel()
	for _, point := range []string{"establish", "joined", "read"} {
		for _, kind := range []string{"record", "scope"} {
			for _, warm := range []bool{false, true} {
				if point == "establish" && warm {
					continue // the scope is set up only for the first stream
				}
				t.Run(fmt.Sprintf("%s/%s/warm=%v", point, kind, warm), func(t *testing.T) {
					t.Parallel()
					r := newRig(t)
					const key, scope = "doc/1", "docs"
					put(t, r.store, key, scope, "v1")
					targets := Targets{Records: []RecordTarget{{Key: key, Scope: scope}}}
					if kind == "scope" {
						targets = scopeTargets(scope, 0)
					}
					var other *run
					if warm {
						other = r.open(t, StreamerConfig{}, scopeTargets(scope, 0), nil)
						other.expect("record doc/1 v1 s1 snapshot", "synced docs@1")
					}
					var once sync.Once
					commit := func() {
						once.Do(func() {
							put(t, r.store, key, scope, "v2")
							if other != nil {
								// The Hub has handed v2 out before the new
								// stream goes on.
								other.expect("record doc/1 v2 s2")
							}
						})
					}
					streamer := NewStreamer(r.store, r.hub, StreamerConfig{})
					if point == "establish" {
						r.hub.testHookEstablish = func(string) { commit() }
					} else {
						streamer.testHook = func(p string) {
							if p == point {
								commit()
							}
						}
					}
					sr := r.openWith(t, streamer, targets)
					// Wait for the second version wherever it lands, then
					// write a third: every version from the snapshot on
					// arrives once, in order.
					got := sr.versions(key, 2)
					put(t, r.store, key, scope, "v3")
					got = append(got, sr.versions(key, 3)...)
					// The catch-up may take in v3 before its SyncedEvent.
					sr.skipSynced()
					want := []int64{1, 2, 3}
					if got[0] == 2 {
						want = want[1:] // committed before the catch-up read
					}
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("versions %v, want %v", got, want)
					}
					sr.quiet(100 * time.Millisecond)
				})
			}
		}
	}
}

// openWith is open with a Streamer of the test's own.
func (r *rig) openWith(t *testing.T, streamer *Streamer, targets Targets) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sr := &run{t: t, events: make(chan *syncv1.SubscribeResponse, 10000), done: make(chan error, 1)}
	go func() {
		sr.done <- streamer.Stream(ctx, targets, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
			select {
			case sr.events <- ev:
				return nil
			default:
				return errors.New("test event buffer full")
			}
		}))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sr.done:
		case <-time.After(wait):
			t.Error("Stream did not end after its context was canceled")
		}
	})
	return sr
}

// skipSynced consumes the SyncedEvent if it has not been read yet (versions
// skips it when it comes first).
func (sr *run) skipSynced() {
	sr.t.Helper()
	if sr.synced {
		return
	}
	select {
	case ev := <-sr.events:
		if ev.GetSynced() == nil {
			sr.t.Fatalf("unexpected event %q, want the SyncedEvent", describeEvent(ev))
		}
	case <-time.After(wait):
		sr.t.Fatal("no SyncedEvent")
	}
}

// versions returns the versions of key the stream delivers up to and
// including until, failing on a coalesced event.
func (sr *run) versions(key string, until int64) []int64 {
	sr.t.Helper()
	var out []int64
	timeout := time.After(wait)
	for {
		select {
		case ev := <-sr.events:
			if ev.GetSynced() != nil {
				sr.synced = true
			}
			rec := ev.GetRecord()
			if rec == nil || rec.GetRecord().GetKey() != key {
				continue
			}
			if rec.GetCoalesced() {
				sr.t.Fatalf("coalesced event %s", describeEvent(ev))
			}
			v := rec.GetRecord().GetVersion()
			out = append(out, v)
			if v >= until {
				return out
			}
		case err := <-sr.done:
			sr.t.Fatalf("stream ended early: %v", err)
		case <-timeout:
			sr.t.Fatalf("timed out waiting for %s v%d; got %v", key, until, out)
		}
	}
}

// TestStreamRecordTargetGetsLateVersion: a version whose publication is
// late (here: lost, then filled from Postgres) reaches a record target
// before the newer version that overtook it.
func TestStreamRecordTargetGetsLateVersion(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sr := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "doc/1", Scope: "docs"}}}, nil)
	sr.expect("synced")
	put(t, r.quiet, "doc/1", "docs", "lost") // v1 never reaches NATS
	put(t, r.store, "doc/1", "docs", "seen") // v2 does
	sr.expect("record doc/1 v1 s1", "record doc/1 v2 s2")
	sr.quiet(100 * time.Millisecond)
}

// instance is one more engine on a rig's database and NATS server, with a
// NATS connection of its own, as a second sluiced would have.
type instance struct {
	store    *Store
	hub      *Hub
	streamer *Streamer
}

func (r *rig) instance(t *testing.T) *instance {
	t.Helper()
	nc, err := nats.Connect(r.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	pub := NewPublisher(nc, r.pool, PublisherConfig{Prefix: r.prefix})
	runT(t, pub)
	store := NewStore(r.pool, StoreConfig{Notifier: pub})
	hub := NewHub(nc, store, HubConfig{Prefix: r.prefix})
	runT(t, hub)
	return &instance{store: store, hub: hub, streamer: NewStreamer(store, hub, StreamerConfig{Buffer: 4096})}
}

// watcher follows one target through any number of stream lives (resume
// with the cursor of the previous life) and records every version.
type watcher struct {
	name     string
	scope    bool
	versions []int64
	cursor   int64 // version (record) or seq (scope) delivered
	problems []string
}

// life runs one stream of w on in until ctx ends or, when stopAt > 0, the
// stream delivered version stopAt.
func (w *watcher) life(ctx context.Context, in *instance, key, scope string, stopAt int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	targets := Targets{Records: []RecordTarget{{Key: key, Scope: scope, Version: w.cursor}}}
	if w.scope {
		targets = Targets{Scopes: []ScopeTarget{{Scope: scope, AfterSeq: w.cursor}}}
	}
	err := in.streamer.Stream(ctx, targets, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
		rec := ev.GetRecord()
		if rec == nil {
			return nil
		}
		v, seq := rec.GetRecord().GetVersion(), rec.GetRecord().GetSeq()
		if rec.GetCoalesced() {
			w.problems = append(w.problems, fmt.Sprintf("coalesced v%d", v))
		}
		if n := len(w.versions); n > 0 && v != w.versions[n-1]+1 {
			w.problems = append(w.problems, fmt.Sprintf("v%d after v%d", v, w.versions[n-1]))
		}
		w.versions = append(w.versions, v)
		if w.scope {
			w.cursor = seq
		} else {
			w.cursor = v
		}
		if stopAt > 0 && v >= stopAt {
			cancel()
		}
		return nil
	}))
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// TestRacingWritersEveryVersionInOrder: four writers on two instances
// hammer one record while streams on both instances follow it, as a record
// target and as a scope target, some from the start, some joining late and
// some ending and resuming with their cursor. Every stream receives every
// committed version once, in commit order, and none is marked coalesced.
func TestRacingWritersEveryVersionInOrder(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	ins := []*instance{r.instance(t), r.instance(t)}
	const key, scope = "global-color", "global-color"
	const writers, perWriter = 4, 60
	const final = writers*perWriter + 1 // and the first put

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var watchers []*watcher
	follow := func(in *instance, w *watcher, stopAt ...int64) {
		mu.Lock()
		watchers = append(watchers, w)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, at := range append(stopAt, final) {
				if err := w.life(ctx, in, key, scope, at); err != nil {
					fail(fmt.Errorf("%s: %w", w.name, err))
					return
				}
			}
		}()
	}
	put(t, ins[0].store, key, scope, "start")
	for i, in := range ins {
		follow(in, &watcher{name: fmt.Sprintf("record@%d", i)})
		follow(in, &watcher{name: fmt.Sprintf("scope@%d", i), scope: true})
		// Ends and resumes (on the other instance) three times.
		follow(ins[1-i], &watcher{name: fmt.Sprintf("resuming-record@%d", i)}, 20, 90, 150)
		follow(ins[1-i], &watcher{name: fmt.Sprintf("resuming-scope@%d", i), scope: true}, 40, 100, 200)
	}
	var written sync.WaitGroup
	for w := range writers {
		written.Add(1)
		go func() {
			defer written.Done()
			store := ins[w%2].store
			for n := range perWriter {
				_, err := store.Update(ctx, "tester", func(ctx context.Context, tx *Tx) error {
					_, err := tx.Put(ctx, key, scope, user(key, fmt.Sprintf("w%d-%d", w, n)))
					return err
				})
				if err != nil {
					fail(fmt.Errorf("writer %d: %w", w, err))
					return
				}
				if w == 0 && n == perWriter/3 {
					// Late joiners, mid-burst.
					for i, in := range ins {
						follow(in, &watcher{name: fmt.Sprintf("late-record@%d", i)})
						follow(in, &watcher{name: fmt.Sprintf("late-scope@%d", i), scope: true})
					}
				}
			}
		}()
	}
	written.Wait()
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	for _, w := range watchers {
		n := len(w.versions)
		switch {
		case n == 0:
			t.Errorf("%s: received nothing", w.name)
		case w.versions[n-1] != final:
			t.Errorf("%s: ended at v%d, want v%d", w.name, w.versions[n-1], final)
		case len(w.problems) > 0:
			t.Errorf("%s: %v", w.name, w.problems)
		}
	}
}

// TestRecordTargetAfterNATSRestart: versions committed while NATS was down
// reach a record target one by one after the reconnect, none coalesced.
func TestRecordTargetAfterNATSRestart(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	sr := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "doc/n", Scope: "docs"}}}, nil)
	sr.expect("synced")
	put(t, r.store, "doc/n", "docs", "before")
	sr.expect("record doc/n v1 s1")

	r.nats.Stop()
	for i := range 3 {
		put(t, r.quiet, "doc/n", "docs", fmt.Sprintf("during %d", i))
	}
	r.nats.Start()
	sr.expect("record doc/n v2 s2", "record doc/n v3 s3", "record doc/n v4 s4")

	put(t, r.store, "doc/n", "docs", "after")
	sr.expect("record doc/n v5 s5")
}

// TestHubReplayTooLongIsCoalesced: when more changes were missed than the
// Hub replays one by one, the stream re-reads current state and says so.
func TestHubReplayTooLongIsCoalesced(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	hub := NewHub(r.nc, r.store, HubConfig{Prefix: r.prefix, MaxPending: 2})
	runT(t, hub)
	sr := r.openWith(t, NewStreamer(r.store, hub, StreamerConfig{}), Targets{
		Records: []RecordTarget{{Key: "doc/m", Scope: "docs"}},
		Scopes:  []ScopeTarget{{Scope: "other"}},
	})
	sr.expect("synced other@0")
	put(t, r.store, "doc/m", "docs", "before")
	sr.expect("record doc/m v1 s1")

	r.nats.Stop()
	for i := range 5 {
		put(t, r.quiet, "doc/m", "docs", fmt.Sprintf("during %d", i))
	}
	r.nats.Start()
	sr.expect("record doc/m v6 s6 coalesced")

	put(t, r.store, "doc/m", "docs", "after")
	sr.expect("record doc/m v7 s7")
}

// TestNATSStallServedFromPostgres: while NATS stalls without a disconnect
// (the connection is black-holed), the Hub notices within its health check
// and serves the stream from Postgres, in order; when NATS answers again
// the late messages are dropped as duplicates.
func TestNATSStallServedFromPostgres(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	srv := testenv.StartNATS(t)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(srv.URL(), "nats://"))
	nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r := &rig{pool: pool, nats: srv, nc: nc, prefix: testenv.Prefix()}
	pub := NewPublisher(nc, pool, PublisherConfig{Prefix: r.prefix})
	runT(t, pub)
	r.store = NewStore(pool, StoreConfig{Notifier: pub})
	r.hub = NewHub(nc, r.store, HubConfig{Prefix: r.prefix, HealthEvery: 200 * time.Millisecond, HealthTimeout: 200 * time.Millisecond})
	runT(t, r.hub)

	sr := r.open(t, StreamerConfig{}, Targets{Records: []RecordTarget{{Key: "doc/s", Scope: "docs"}}}, nil)
	sr.expect("synced")
	put(t, r.store, "doc/s", "docs", "before")
	sr.expect("record doc/s v1 s1")

	proxy.Pause()
	for i := range 3 {
		put(t, r.store, "doc/s", "docs", fmt.Sprintf("during %d", i))
	}
	sr.expect("record doc/s v2 s2", "record doc/s v3 s3", "record doc/s v4 s4")
	// A stream opened during the stall, on a scope the Hub did not follow
	// yet, is not held up by the unconfirmed subscription.
	opened := time.Now()
	late := r.open(t, StreamerConfig{}, scopeTargets("docs2", 0), nil)
	late.expect("synced docs2@0")
	if d := time.Since(opened); d > 3*time.Second {
		t.Fatalf("a stream opened during the stall synced after %v: held up by the subscription", d)
	}
	put(t, r.store, "doc/t", "docs2", "during")
	late.expect("record doc/t v1 s1")
	proxy.Resume()
	put(t, r.store, "doc/s", "docs", "after")
	sr.expect("record doc/s v5 s5")
	sr.quiet(300 * time.Millisecond)
}
