package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// TestStreamWindow: a scope target with a window reads and sends only the
// newest records of the scope, then the live changes; resumed, it reads
// only the changes after its cursor.
func TestStreamWindow(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const scope = "channel/w"
	for i := 1; i <= 10; i++ {
		put(t, r.store, fmt.Sprintf("msg/%02d", i), scope, "x")
	}
	streamer := NewStreamer(r.store, r.hub, StreamerConfig{})
	before := streamer.Stats().RowsRead
	sr := r.openWith(t, streamer, Targets{Scopes: []ScopeTarget{{Scope: scope, Limit: 3}}})
	sr.expect("record msg/08 v1 s8 snapshot", "record msg/09 v1 s9 snapshot", "record msg/10 v1 s10 snapshot", "synced channel/w@10")
	if read := streamer.Stats().RowsRead - before; read != 3 {
		t.Fatalf("the windowed subscribe read %d rows, want 3", read)
	}
	put(t, r.store, "msg/11", scope, "x")
	sr.expect("record msg/11 v1 s11")

	put(t, r.store, "msg/12", scope, "x")
	before = streamer.Stats().RowsRead
	resumed := r.openWith(t, streamer, Targets{Scopes: []ScopeTarget{{Scope: scope, AfterSeq: 10, Limit: 3}}})
	resumed.expect("record msg/11 v1 s11", "record msg/12 v1 s12", "synced channel/w@12")
	if read := streamer.Stats().RowsRead - before; read != 2 {
		t.Fatalf("the resumed subscribe read %d rows, want the 2 changes after its cursor", read)
	}
}

// TestStreamSnapshotCap: a whole-scope snapshot above MaxSnapshot is
// refused with SnapshotTooLargeError; with a window it is not; at the cap
// it is sent, in batches.
func TestStreamSnapshotCap(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const scope = "channel/cap"
	for i := 1; i <= 6; i++ {
		put(t, r.store, fmt.Sprintf("msg/%d", i), scope, "x")
	}
	streamer := NewStreamer(r.store, r.hub, StreamerConfig{MaxSnapshot: 5})
	err := streamer.Stream(ctxT(t), scopeTargets(scope, 0), SinkFunc(func(*syncv1.SubscribeResponse) error { return nil }))
	var tooLarge *SnapshotTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Scope != scope || tooLarge.Max != 5 {
		t.Fatalf("Stream = %v, want SnapshotTooLargeError for %s", err, scope)
	}
	sr := r.openWith(t, streamer, Targets{Scopes: []ScopeTarget{{Scope: scope, Limit: 2}}})
	sr.expect("record msg/5 v1 s5 snapshot", "record msg/6 v1 s6 snapshot", "synced channel/cap@6")

	atCap := NewStreamer(r.store, r.hub, StreamerConfig{MaxSnapshot: 6})
	all := r.openWith(t, atCap, scopeTargets(scope, 0))
	for i := 1; i <= 6; i++ {
		all.expect(fmt.Sprintf("record msg/%d v1 s%d snapshot", i, i))
	}
	all.expect("synced channel/cap@6")
}

// TestStoreList pages a scope newest first; deleted records are left out;
// each page's cursor leads to the next and the last page says there is no
// more; a key prefix keeps a typed list of the scope, paged the same way.
func TestStoreList(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const scope = "channel/l"
	for i := 1; i <= 5; i++ {
		put(t, r.store, fmt.Sprintf("msg/%d", i), scope, "x")
	}
	del(t, r.store, "msg/4")                // seq 6
	put(t, r.store, "member/a", scope, "x") // seq 7
	page := func(prefix string, before int64, limit int) ([]string, int64) {
		p, err := r.store.List(context.Background(), ListQuery{Scope: scope, KeyPrefix: prefix, BeforeSeq: before, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		if p.ScopeSeq != 7 {
			t.Fatalf("scope seq %d, want 7", p.ScopeSeq)
		}
		var keys []string
		for _, c := range p.Records {
			keys = append(keys, fmt.Sprintf("%s@%d", c.Key, c.Seq))
		}
		return keys, p.NextBeforeSeq
	}
	steps := []struct {
		prefix string
		want   []string
		next   []int64
	}{
		{"", []string{"[member/a@7 msg/5@5]", "[msg/3@3 msg/2@2]", "[msg/1@1]"}, []int64{5, 2, 0}},
		{"msg/", []string{"[msg/5@5 msg/3@3]", "[msg/2@2 msg/1@1]"}, []int64{3, 0}},
	}
	for _, st := range steps {
		var before int64
		for i, want := range st.want {
			got, next := page(st.prefix, before, 2)
			if fmt.Sprint(got) != want || next != st.next[i] {
				t.Fatalf("prefix %q page %d: %v next %d, want %s next %d", st.prefix, i+1, got, next, want, st.next[i])
			}
			before = next
		}
	}
	if _, err := r.store.List(context.Background(), ListQuery{Scope: scope}); err == nil {
		t.Fatal("limit 0 listed")
	}
}

// TestSnapshotCompleteAtSynced: records changed or deleted while a
// snapshot is being read in pages are brought up to date before the
// SyncedEvent, whose cursor covers them, with no version skipped: at
// synced the client holds the scope's whole state as of that cursor.
func TestSnapshotCompleteAtSynced(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	const scope = "channel/p"
	put(t, r.store, "msg/1", scope, "a") // s1
	put(t, r.store, "msg/2", scope, "b") // s2
	streamer := NewStreamer(r.store, r.hub, StreamerConfig{})
	var once sync.Once
	streamer.testHook = func(p string) {
		if p == "page" {
			once.Do(func() {
				put(t, r.store, "msg/1", scope, "a2") // s3
				del(t, r.store, "msg/2")              // s4
				put(t, r.store, "msg/3", scope, "c")  // s5
			})
		}
	}
	sr := r.openWith(t, streamer, scopeTargets(scope, 0))
	// msg/1 and msg/2 were sent: their next versions follow as changes;
	// msg/3 was not: it arrives as a snapshot.
	sr.expect(
		"record msg/1 v1 s1 snapshot",
		"record msg/2 v1 s2 snapshot",
		"record msg/1 v2 s3",
		"removed msg/2 v2 s4",
		"record msg/3 v1 s5 snapshot",
		"synced channel/p@5",
	)
	put(t, r.store, "msg/3", scope, "c2")
	sr.expect("record msg/3 v2 s6")
	sr.quiet(100 * time.Millisecond)
}
