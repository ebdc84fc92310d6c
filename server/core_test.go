package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Two subscribers (one of them the writer) see the new version; a third
// that resumes from version N gets only newer versions.
func TestAvatarReachesEveryStream(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	bob := login(t, app.url, "bob")
	shareOrg(t, app.url, alice, "bob")

	first := alice.setAvatar(t, "https://example.com/a1.png")
	if first.GetVersion() != 1 || first.GetKey() != "user/alice" {
		t.Fatalf("first write = %v, want user/alice v1", first)
	}

	target := &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}
	mine := alice.subscribe(t, target)
	theirs := bob.subscribe(t, target)
	for _, s := range []*events{mine, theirs} {
		snap := s.untilSynced(t)
		if len(snap) != 1 || !snap[0].GetRecord().GetSnapshot() || snap[0].GetRecord().GetRecord().GetVersion() != 1 {
			t.Fatalf("catch-up = %v, want snapshot of v1", snap)
		}
	}

	w := alice.setAvatar(t, "https://example.com/a2.png")
	for name, s := range map[string]*events{"writer": mine, "other": theirs} {
		m := s.next(t, 10*time.Second)
		r := m.GetRecord().GetRecord()
		if r.GetVersion() != w.GetVersion() || avatarOf(t, r) != "https://example.com/a2.png" || r.GetUpdatedBy() != "alice" {
			t.Fatalf("%s got %v, want v%d with the new avatar", name, m, w.GetVersion())
		}
	}

	alice.setAvatar(t, "https://example.com/a3.png")
	resumed := bob.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice", Version: 2}}})
	got := resumed.untilSynced(t)
	if len(got) != 1 || got[0].GetRecord().GetRecord().GetVersion() != 3 {
		t.Fatalf("resume from v2 = %v, want only v3", got)
	}
	alice.setAvatar(t, "https://example.com/a4.png")
	if v := resumed.next(t, 10*time.Second).GetRecord().GetRecord().GetVersion(); v != 4 {
		t.Fatalf("live after resume = v%d, want v4", v)
	}
}

// Writes hammer a record while streams subscribe: every stream ends at the
// version in Postgres, never sees a version twice or out of order.
func TestSubscribeRace(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	bob := login(t, app.url, "bob")
	shareOrg(t, app.url, alice, "bob")

	const writes = 150
	const streams = 12
	var wg sync.WaitGroup
	var final int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= writes; i++ {
			final = alice.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i)).GetVersion()
		}
	}()

	type result struct {
		versions []int64
		err      error
	}
	results := make(chan result, streams)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 15 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			stream, err := bob.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}))
			if err != nil {
				results <- result{err: err}
				return
			}
			defer stream.Close()
			var vs []int64
			for stream.Receive() {
				if r := stream.Msg().GetRecord(); r != nil {
					v := r.GetRecord().GetVersion()
					vs = append(vs, v)
					if v == writes {
						break
					}
				}
			}
			results <- result{versions: vs, err: stream.Err()}
		}()
	}
	wg.Wait()
	close(results)
	if final != writes {
		t.Fatalf("final version %d, want %d", final, writes)
	}
	for r := range results {
		if r.err != nil {
			t.Fatalf("stream: %v", r.err)
		}
		if len(r.versions) == 0 || r.versions[len(r.versions)-1] != writes {
			t.Fatalf("stream ended at %v, want version %d", r.versions, writes)
		}
		for i := 1; i < len(r.versions); i++ {
			if r.versions[i] <= r.versions[i-1] {
				t.Fatalf("versions out of order or duplicated: %v", r.versions)
			}
		}
	}
}

// A scope feed resumed from seq N delivers exactly the changes after N in
// commit order; a cursor behind the retention horizon gets a reset and a
// fresh snapshot.
func TestScopeFeedResumeAndReset(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.KeepPerScope = 5
	app := startApp(t, cfg)
	alice := login(t, app.url, "alice")
	for i := 1; i <= 8; i++ {
		alice.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i))
	}

	s := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice", AfterSeq: 3}}})
	var seqs []int64
	for _, m := range s.untilSynced(t) {
		r := m.GetRecord()
		if r == nil || r.GetSnapshot() {
			t.Fatalf("resume within history must be a change list, got %v", m)
		}
		seqs = append(seqs, r.GetRecord().GetSeq())
	}
	if fmt.Sprint(seqs) != "[4 5 6 7 8]" {
		t.Fatalf("changes after seq 3 = %v, want [4 5 6 7 8]", seqs)
	}
	alice.setAvatar(t, "https://example.com/9.png")
	if seq := s.next(t, 10*time.Second).GetRecord().GetRecord().GetSeq(); seq != 9 {
		t.Fatalf("live seq = %d, want 9", seq)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Wait until the publisher marked everything published (pruning never
	// removes unpublished changes), then prune to 5 changes per scope.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM changes WHERE NOT published`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes still unpublished", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n, err := app.relay.Prune(ctx); err != nil || n != 4 {
		t.Fatalf("prune = %d, %v; want 4 deleted", n, err)
	}

	old := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice", AfterSeq: 2}}})
	got := old.untilSynced(t)
	if len(got) != 2 || got[0].GetReset_().GetScope() != "user/alice" || got[0].GetReset_().GetHorizonSeq() != 4 {
		t.Fatalf("behind horizon = %v, want reset(horizon 4) + snapshot", got)
	}
	if snap := got[1].GetRecord(); !snap.GetSnapshot() || snap.GetRecord().GetVersion() != 9 {
		t.Fatalf("snapshot = %v, want v9", got[1])
	}
	// A cursor exactly at the horizon still gets the change list.
	edge := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice", AfterSeq: 4}}})
	if got := edge.untilSynced(t); len(got) != 5 || got[0].GetRecord().GetRecord().GetSeq() != 5 {
		t.Fatalf("resume at horizon = %d events, want seqs 5..9", len(got))
	}
}

// Two instances share Postgres and NATS: a write through A reaches a
// stream on B.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	a := startApp(t, cfg)
	b := startApp(t, cfg)

	onA := login(t, a.url, "alice")
	onB := login(t, b.url, "bob")
	shareOrg(t, a.url, onA, "bob")
	s := onB.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	s.untilSynced(t)
	for i := 1; i <= 5; i++ {
		w := onA.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i))
		if v := s.next(t, 10*time.Second).GetRecord().GetRecord().GetVersion(); v != w.GetVersion() {
			t.Fatalf("B got v%d, want v%d", v, w.GetVersion())
		}
	}
	// A session from A is valid on B: sessions live in Postgres.
	onA2 := newClient(b.url)
	onA2.token = onA.token
	onA2.setAvatar(t, "https://example.com/from-b.png")
	if r := s.next(t, 10*time.Second).GetRecord().GetRecord(); r.GetVersion() != 6 || avatarOf(t, r) != "https://example.com/from-b.png" {
		t.Fatalf("write through B = %v", r)
	}
}

// A change committed but never published (a crash between commit and
// publish) reaches subscribers once the relay runs.
func TestRelayPublishesCommittedButUnpublished(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	crashy := cfg
	crashy.NoPublish = true // commits, never publishes, runs no relay
	writer := startApp(t, crashy)
	reader := startApp(t, cfg)

	alice := login(t, writer.url, "alice")
	bob := login(t, reader.url, "bob")
	shareOrg(t, reader.url, bob, "alice")
	s := bob.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice"}}})
	s.untilSynced(t)
	w := alice.setAvatar(t, "https://example.com/lost.png")

	// Nothing was published: the reader learns of it only through its relay.
	m := s.next(t, 15*time.Second)
	if r := m.GetRecord().GetRecord(); r.GetVersion() != w.GetVersion() || avatarOf(t, r) != "https://example.com/lost.png" {
		t.Fatalf("got %v, want the unpublished v%d", m, w.GetVersion())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The relay marks the row after NATS acknowledged it, so the delivery
	// may come first; wait for the mark.
	for {
		var published bool
		if err := reader.pool.QueryRow(ctx, `SELECT published FROM changes WHERE scope = 'user/alice' AND seq = $1`, w.GetSeq()).Scan(&published); err != nil {
			t.Fatalf("relay did not mark the change published: %v", err)
		}
		if published {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NATS restarts while writes go on: every stream converges to the state in
// Postgres, with versions in order.
func TestNATSRestartDuringWrites(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	a := startApp(t, cfg)
	b := startApp(t, cfg)
	alice := login(t, a.url, "alice")
	carol := login(t, b.url, "carol")
	shareOrg(t, a.url, alice, "carol")

	streams := []*events{
		carol.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}),
		carol.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice"}}}),
		alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice"}}}),
	}
	for _, s := range streams {
		s.untilSynced(t)
	}
	const writes = 60
	for i := 1; i <= writes; i++ {
		if i == 20 {
			nats.Stop()
		}
		if i == 40 {
			nats.Start()
		}
		alice.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i))
		time.Sleep(10 * time.Millisecond)
	}
	for i, s := range streams {
		last := int64(0)
		lastSeq := int64(0)
		for last < writes {
			m := s.next(t, 30*time.Second)
			r := m.GetRecord()
			if r == nil {
				t.Fatalf("stream %d: unexpected event %v", i, m)
			}
			v, seq := r.GetRecord().GetVersion(), r.GetRecord().GetSeq()
			if v <= last {
				t.Fatalf("stream %d: version %d after %d", i, v, last)
			}
			if i > 0 && !r.GetCoalesced() && seq != lastSeq+1 {
				t.Fatalf("stream %d: scope seq %d after %d without coalesced", i, seq, lastSeq)
			}
			last, lastSeq = v, seq
		}
	}
}
