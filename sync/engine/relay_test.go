package engine

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// subscribeChanges subscribes to every change subject of prefix and
// returns once the server has the subscription.
func subscribeChanges(t *testing.T, nc *nats.Conn, prefix string) *nats.Subscription {
	t.Helper()
	sub, err := nc.SubscribeSync(prefix + ".chg.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(wait); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// published is a change as received from NATS.
type published struct {
	subject string
	info    eventInfo
	deleted bool
	name    string // the payload's display name
}

func nextChange(t *testing.T, sub *nats.Subscription) published {
	t.Helper()
	m, err := sub.NextMsg(wait)
	if err != nil {
		t.Fatalf("waiting for a change on NATS: %v", err)
	}
	ev := new(syncv1.SubscribeResponse)
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		t.Fatalf("decode change: %v", err)
	}
	info, ok := infoOf(ev)
	if !ok {
		t.Fatalf("NATS carried a non-change event %v", ev)
	}
	p := published{subject: m.Subject, info: info, deleted: ev.GetRemoved() != nil}
	if r := ev.GetRecord(); r != nil {
		var u userv1.User
		if err := r.GetRecord().GetPayload().UnmarshalTo(&u); err != nil {
			t.Fatalf("payload: %v", err)
		}
		p.name = u.GetDisplayName()
	}
	return p
}

// noMoreChanges fails if sub receives anything within a short while.
func noMoreChanges(t *testing.T, sub *nats.Subscription) {
	t.Helper()
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("unexpected message on %s", m.Subject)
	}
}

func TestRelayPublishesUnpublishedChanges(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	prefix := testenv.Prefix()
	s := NewStore(pool, StoreConfig{}) // no Notifier: nothing is published after commit
	put(t, s, "msg/1", "channel/1", "one")
	put(t, s, "msg/2", "channel/1", "two")
	del(t, s, "msg/1")
	put(t, s, "user/9", "user.9 *odd*", "nine")

	for _, r := range changeRows(t, pool, "channel/1") {
		if r.Published {
			t.Fatalf("change %v published without a Notifier or Relay", r)
		}
	}

	sub := subscribeChanges(t, nc, prefix)
	relay := NewRelay(nc, pool, RelayConfig{Prefix: prefix})
	n, err := relay.RunOnce(ctxT(t), 0)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	if n != 4 {
		t.Fatalf("RunOnce republished %d changes, want 4", n)
	}

	got := map[string][]published{}
	for range 4 {
		p := nextChange(t, sub)
		got[p.info.scope] = append(got[p.info.scope], p)
	}
	ch := got["channel/1"]
	if len(ch) != 3 {
		t.Fatalf("channel/1 changes on NATS: %+v", got)
	}
	for i, want := range []published{
		{subject: prefix + ".chg.channel/1", info: eventInfo{key: "msg/1", scope: "channel/1", version: 1, seq: 1}, name: "one"},
		{subject: prefix + ".chg.channel/1", info: eventInfo{key: "msg/2", scope: "channel/1", version: 1, seq: 2}, name: "two"},
		{subject: prefix + ".chg.channel/1", info: eventInfo{key: "msg/1", scope: "channel/1", version: 2, seq: 3}, deleted: true},
	} {
		if ch[i] != want {
			t.Errorf("change %d on NATS = %+v, want %+v", i, ch[i], want)
		}
	}
	odd := got["user.9 *odd*"]
	if len(odd) != 1 || odd[0].subject != prefix+".chg."+scopeToken("user.9 *odd*") || odd[0].name != "nine" {
		t.Errorf("change of a scope with unsafe characters: %+v", odd)
	}

	for _, scope := range []string{"channel/1", "user.9 *odd*"} {
		for _, r := range changeRows(t, pool, scope) {
			if !r.Published {
				t.Errorf("change %v of %s not marked published after RunOnce", r, scope)
			}
		}
	}

	// A second pass finds nothing left to do.
	if n, err := relay.RunOnce(ctxT(t), 0); err != nil || n != 0 {
		t.Fatalf("second RunOnce = %d, %v; want 0, nil", n, err)
	}
	noMoreChanges(t, sub)
}

func TestRelayWaitsForGrace(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	s := NewStore(pool, StoreConfig{})
	put(t, s, "msg/1", "channel/1", "one")
	relay := NewRelay(nc, pool, RelayConfig{Prefix: testenv.Prefix()})
	// A fresh change belongs to the post-commit path for a while.
	if n, err := relay.RunOnce(ctxT(t), time.Hour); err != nil || n != 0 {
		t.Fatalf("RunOnce(grace 1h) = %d, %v; want 0, nil", n, err)
	}
	if rows := changeRows(t, pool, "channel/1"); rows[0].Published {
		t.Fatal("change within the grace period marked published")
	}
}

func TestRelayBackgroundLoop(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	prefix := testenv.Prefix()
	sub := subscribeChanges(t, nc, prefix)
	s := NewStore(pool, StoreConfig{})
	relay := NewRelay(nc, pool, RelayConfig{Prefix: prefix, Interval: 20 * time.Millisecond, Grace: time.Millisecond})
	runT(t, relay)

	put(t, s, "msg/1", "channel/1", "one")
	if p := nextChange(t, sub); p.info.key != "msg/1" || p.info.seq != 1 {
		t.Fatalf("relay published %+v", p)
	}
	eventually(t, "the relayed change to be marked published", func() bool {
		return changeRows(t, pool, "channel/1")[0].Published
	})
}

func TestPrune(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	s := NewStore(pool, StoreConfig{})
	prefix := testenv.Prefix()
	for i := range 10 {
		put(t, s, []string{"msg/a", "msg/b", "msg/c"}[i%3], "channel/1", "x")
	}
	keep3 := NewRelay(nc, pool, RelayConfig{Prefix: prefix, KeepPerScope: 3})

	// Nothing is published yet: nothing may be pruned.
	if n, err := keep3.Prune(ctxT(t)); err != nil || n != 0 {
		t.Fatalf("Prune of unpublished history = %d, %v; want 0, nil", n, err)
	}
	if _, horizon, _ := scopeRow(t, pool, "channel/1"); horizon != 0 {
		t.Fatalf("horizon = %d after pruning nothing", horizon)
	}

	if n, err := keep3.RunOnce(ctxT(t), 0); err != nil || n != 10 {
		t.Fatalf("RunOnce = %d, %v; want 10", n, err)
	}
	put(t, s, "msg/a", "channel/1", "x") // seq 11, unpublished
	put(t, s, "msg/b", "channel/1", "x") // seq 12, unpublished

	n, err := keep3.Prune(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 {
		t.Fatalf("Prune deleted %d changes, want 9 (seqs 1..9)", n)
	}
	if got := seqsOf(changeRows(t, pool, "channel/1")); !slices.Equal(got, []int64{10, 11, 12}) {
		t.Fatalf("seqs kept = %v, want [10 11 12]", got)
	}
	if seq, horizon, _ := scopeRow(t, pool, "channel/1"); seq != 12 || horizon != 9 {
		t.Fatalf("scope seq %d horizon %d, want 12 and 9", seq, horizon)
	}
	// Records are state, not history: they stay.
	if recs, err := s.Records(ctxT(t), []string{"msg/a", "msg/b", "msg/c"}); err != nil || len(recs) != 3 {
		t.Fatalf("records after prune: %d, %v", len(recs), err)
	}

	// Pruning again changes nothing and never moves the horizon back.
	if n, err := keep3.Prune(ctxT(t)); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0", n, err)
	}
	if _, horizon, _ := scopeRow(t, pool, "channel/1"); horizon != 9 {
		t.Fatalf("horizon moved to %d", horizon)
	}
}

func TestPruneKeepsUnpublished(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	s := NewStore(pool, StoreConfig{})
	for range 5 {
		put(t, s, "msg/a", "channel/2", "x")
	}
	// Seq 3 was never acknowledged; everything else was.
	if _, err := pool.Exec(ctxT(t), `UPDATE changes SET published = true WHERE scope = 'channel/2' AND seq <> 3`); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(nc, pool, RelayConfig{Prefix: testenv.Prefix(), KeepPerScope: 1})
	n, err := r.Prune(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := changeRows(t, pool, "channel/2"); n != 3 || !slices.Equal(seqsOf(got), []int64{3, 5}) || got[0].Published {
		t.Fatalf("Prune deleted %d and kept %v; want 3 deleted and the unpublished seq 3 kept with seq 5", n, got)
	}
	if _, horizon, _ := scopeRow(t, pool, "channel/2"); horizon != 4 {
		t.Fatalf("horizon = %d, want 4", horizon)
	}

	// Retention by age: everything published and old enough goes, the
	// unpublished change still stays.
	old := NewRelay(nc, pool, RelayConfig{Prefix: testenv.Prefix(), Retention: time.Nanosecond})
	if n, err := old.Prune(ctxT(t)); err != nil || n != 1 {
		t.Fatalf("Prune by age = %d, %v; want 1", n, err)
	}
	if got := seqsOf(changeRows(t, pool, "channel/2")); !slices.Equal(got, []int64{3}) {
		t.Fatalf("seqs kept = %v, want [3]", got)
	}
	if _, horizon, _ := scopeRow(t, pool, "channel/2"); horizon != 5 {
		t.Fatalf("horizon = %d, want 5", horizon)
	}
}

func TestPublisherNotify(t *testing.T) {
	t.Parallel()
	pool := testPool(t)
	_, nc := testNATS(t)
	prefix := testenv.Prefix()
	sub := subscribeChanges(t, nc, prefix)
	pub := NewPublisher(nc, pool, PublisherConfig{Prefix: prefix})
	runT(t, pub)
	s := NewStore(pool, StoreConfig{Notifier: pub})

	put(t, s, "user/1", "user/1", "Ada")
	put(t, s, "user/1", "user/1", "Ada L.")
	del(t, s, "user/1")

	for _, want := range []published{
		{info: eventInfo{key: "user/1", scope: "user/1", version: 1, seq: 1}, name: "Ada"},
		{info: eventInfo{key: "user/1", scope: "user/1", version: 2, seq: 2}, name: "Ada L."},
		{info: eventInfo{key: "user/1", scope: "user/1", version: 3, seq: 3}, deleted: true},
	} {
		want.subject = prefix + ".chg.user/1"
		if got := nextChange(t, sub); got != want {
			t.Fatalf("published %+v, want %+v", got, want)
		}
	}
	eventually(t, "changes marked published", func() bool {
		rows := changeRows(t, pool, "user/1")
		return len(rows) == 3 && rows[0].Published && rows[1].Published && rows[2].Published
	})

	// The relay has nothing left to send.
	relay := NewRelay(nc, pool, RelayConfig{Prefix: prefix})
	if n, err := relay.RunOnce(ctxT(t), 0); err != nil || n != 0 {
		t.Fatalf("RunOnce after the Publisher = %d, %v; want 0", n, err)
	}
}
