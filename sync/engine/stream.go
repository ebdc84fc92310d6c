package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Dep is a record an access decision read. When it changes, the decision
// is checked again.
type Dep struct {
	Key   string
	Scope string
}

// Guard checks again whether the stream may still read a target. It
// returns the records the decision read this time. A Guard runs on the
// stream's goroutine and may query the database; it runs only when one of
// its Deps changed (and after NATS trouble), never per change.
type Guard func(ctx context.Context) (deps []Dep, allowed bool, err error)

// RecordTarget is one record a stream follows. Scope must be the record's
// scope: it picks the NATS subject the record's changes travel on.
type RecordTarget struct {
	Key     string
	Scope   string
	Version int64 // the version the client holds; 0 means none
	// Deps and Guard make access live: when a dep changes, Guard runs and
	// a target it no longer allows gets a RevokedEvent and nothing more.
	// A nil Guard means access never changes while the stream lives.
	Deps  []Dep
	Guard Guard
}

// ScopeTarget is one scope feed a stream follows.
type ScopeTarget struct {
	Scope    string
	AfterSeq int64 // the last seq the client saw; 0 means none
	// Limit, when above 0, is a window: a snapshot holds only the Limit
	// records with the newest seqs.
	Limit int
	Deps  []Dep
	Guard Guard
}

// Targets is what one stream follows. Read access must have been checked
// by the caller.
type Targets struct {
	Records []RecordTarget
	Scopes  []ScopeTarget
}

// StreamerConfig configures a Streamer. The zero value is valid.
type StreamerConfig struct {
	// Heartbeat is the idle time after which a HeartbeatEvent is sent.
	// Zero means 15s.
	Heartbeat time.Duration
	// Buffer bounds the live changes queued per stream before it
	// coalesces. Zero means 1024.
	Buffer int
	// MaxSnapshot bounds the records of a snapshot of a whole scope (a
	// scope target without a window); a larger scope is refused with a
	// SnapshotTooLargeError. Zero means 10000.
	MaxSnapshot int
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Streamer runs streams: catch-up from Postgres merged with live changes
// from the Hub. It is safe for concurrent use.
type Streamer struct {
	store *Store
	hub   *Hub
	cfg   StreamerConfig
	log   *slog.Logger

	counters streamCounters

	// testHook, when set, runs at the points of a new stream where a
	// concurrent commit is hardest to get right: "joined" (after the Hub
	// joins), "page" (after a page of a scope snapshot is sent) and "read"
	// (after the catch-up, before the first live change is taken).
	testHook func(point string)
}

// NewStreamer returns a Streamer reading from store and hub.
func NewStreamer(store *Store, hub *Hub, cfg StreamerConfig) *Streamer {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1024
	}
	if cfg.MaxSnapshot <= 0 {
		cfg.MaxSnapshot = 10000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Streamer{store: store, hub: hub, cfg: cfg, log: cfg.Logger}
}

// Stream sends t's catch-up, a SyncedEvent, then live changes until ctx ends
// or the sink fails. The sink is called only from the calling goroutine,
// and flushed after each batch of events. Stream returns ctx's error when
// ctx ends, the sink's error, or a database error.
func (s *Streamer) Stream(ctx context.Context, t Targets, sink Sink) error {
	st := &stream{
		s:       s,
		sink:    sink,
		records: make(map[string]*int64),
		scopes:  make(map[string]*int64),
		feed:    newFeed(s.cfg.Buffer),
	}
	st.joined = make(map[string]bool)
	st.depsOf = make(map[string][]*guarded)
	st.limits = make(map[string]int)
	c := &s.counters
	c.open.Add(1)
	c.openRecords.Add(int64(len(t.Records)))
	c.openScopes.Add(int64(len(t.Scopes)))
	defer func() {
		c.open.Add(-1)
		c.openRecords.Add(-int64(len(t.Records)))
		c.openScopes.Add(-int64(len(t.Scopes)))
	}()
	defer func() {
		for scope := range st.joined {
			s.hub.leave(st.feed, scope)
		}
		st.feed.discard()
	}()
	// Join the hub before reading anything: a change committed between the
	// catch-up read and the first live event is then in the feed, and the
	// merge below drops what the catch-up already sent.
	st.join = func(scope string) error {
		if st.joined[scope] {
			return nil
		}
		st.joined[scope] = true
		return s.hub.join(ctx, st.feed, scope)
	}
	join := st.join
	for _, r := range t.Records {
		if _, dup := st.records[r.Key]; dup {
			continue
		}
		v := r.Version
		st.records[r.Key] = &v
		st.recordOrder = append(st.recordOrder, r.Key)
		if err := join(r.Scope); err != nil {
			return err
		}
		if r.Guard != nil {
			if err := st.watch(&guarded{key: r.Key, guard: r.Guard}, r.Deps); err != nil {
				return err
			}
		}
	}
	for _, sc := range t.Scopes {
		if _, dup := st.scopes[sc.Scope]; dup {
			continue
		}
		seq := sc.AfterSeq
		st.scopes[sc.Scope] = &seq
		st.limits[sc.Scope] = sc.Limit
		st.scopeOrder = append(st.scopeOrder, sc.Scope)
		if err := join(sc.Scope); err != nil {
			return err
		}
		if sc.Guard != nil {
			if err := st.watch(&guarded{scope: sc.Scope, guard: sc.Guard}, sc.Deps); err != nil {
				return err
			}
		}
	}
	// Access was checked before the deps were joined; a dep that changed in
	// between would go unnoticed, so check once more now.
	if err := st.recheck(ctx, st.guards); err != nil {
		return err
	}
	if s.testHook != nil {
		s.testHook("joined")
	}
	if err := st.catchUp(ctx); err != nil {
		return err
	}
	synced := &syncv1.SyncedEvent{}
	for _, scope := range st.scopeOrder {
		synced.Scopes = append(synced.Scopes, &syncv1.ScopeTarget{Scope: scope, AfterSeq: *st.scopes[scope]})
	}
	if err := st.emit(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Synced{Synced: synced}}); err != nil {
		return err
	}
	if err := st.sink.Flush(); err != nil {
		return err
	}
	return st.live(ctx)
}

// stream is the state of one running stream, owned by its goroutine.
type stream struct {
	s           *Streamer
	sink        Sink
	feed        *feed
	records     map[string]*int64 // key -> version delivered
	scopes      map[string]*int64 // scope -> seq delivered
	limits      map[string]int    // scope -> window (0: none)
	recordOrder []string
	scopeOrder  []string
	lastSend    time.Time

	guards []*guarded
	depsOf map[string][]*guarded // dep key -> guarded targets
	joined map[string]bool
	join   func(scope string) error
}

// guarded is a target whose access can change.
type guarded struct {
	key, scope string // exactly one is set: the record key or the scope
	guard      Guard
	revoked    bool
}

// emit sends an event made for this stream alone.
func (st *stream) emit(ev *syncv1.SubscribeResponse) error {
	return st.emitEvent(NewEvent(ev))
}

// emitEvent sends an event, possibly shared with other streams. The sink
// may hold it until the next flush.
func (st *stream) emitEvent(e *Event) error {
	st.lastSend = time.Now()
	return st.sink.Send(e)
}

// catchUp sends what the client lacks: first each scope's (a record
// snapshot is delivered with force, and one of a subscribed scope would
// move that scope's cursor past the scope's earlier changes; after the
// scopes, a record of theirs is already current and is skipped by
// advance), then the record targets', read from one snapshot.
func (st *stream) catchUp(ctx context.Context) error {
	for _, scope := range slices.Clone(st.scopeOrder) {
		if st.scopes[scope] == nil {
			continue // revoked by a dep change delivered meanwhile
		}
		if err := st.scopeCatchUp(ctx, scope, *st.scopes[scope]); err != nil {
			return err
		}
	}
	var out []*syncv1.SubscribeResponse
	err := st.s.store.view(ctx, func(r *reader) error {
		if len(st.recordOrder) == 0 {
			return nil
		}
		recs, err := r.records(ctx, st.recordOrder)
		if err != nil {
			return err
		}
		st.s.counters.rowsRead.Add(uint64(len(recs)))
		for i := range recs {
			c := &recs[i]
			have := *st.records[c.Key]
			if c.Version == have || (c.Deleted && have == 0) {
				continue
			}
			if have > 0 && c.Version > have {
				// A client resuming at a version gets every version
				// after it, from the history.
				evs, err := st.replayRecord(ctx, r, c, have)
				if err != nil {
					return err
				}
				out = append(out, evs...)
				continue
			}
			ev, err := c.Event(true, false)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := st.deliverAll(ctx, out); err != nil {
		return err
	}
	if st.s.testHook != nil {
		st.s.testHook("read")
	}
	return nil
}

// maxReplay bounds the versions of one record replayed to a resuming
// stream; beyond it the stream gets the current version, coalesced.
const maxReplay = 1024

// replayRecord returns the changes of cur's record after version have, up
// to cur, or cur alone marked coalesced (and as a snapshot) when they are
// no longer all in the history or there are more than maxReplay.
func (st *stream) replayRecord(ctx context.Context, r *reader, cur *Change, have int64) ([]*syncv1.SubscribeResponse, error) {
	changes, err := r.recordChanges(ctx, cur.Key, have, maxReplay+1)
	if err != nil {
		return nil, err
	}
	n := len(changes)
	if n == 0 || n > maxReplay || changes[0].Version != have+1 || changes[n-1].Version != cur.Version {
		ev, err := cur.Event(true, true)
		if err != nil {
			return nil, err
		}
		return []*syncv1.SubscribeResponse{ev}, nil
	}
	out := make([]*syncv1.SubscribeResponse, 0, n)
	for i := range changes {
		ev, err := changes[i].Event(false, false)
		if err != nil {
			return nil, err
		}
		out = append(out, ev)
	}
	return out, nil
}

// snapshotBatch is how many records a snapshot reads and sends at a time.
const snapshotBatch = 500

// SnapshotTooLargeError refuses a snapshot of a whole scope that holds more
// records than StreamerConfig.MaxSnapshot: the client should subscribe with
// a window (ScopeTarget.Limit) and page older records with List.
type SnapshotTooLargeError struct {
	Scope string
	Max   int
}

func (e *SnapshotTooLargeError) Error() string {
	return fmt.Sprintf("scope %s has more than %d records: subscribe with a window (limit) and page older records with List", e.Scope, e.Max)
}

// scopeCatchUp sends what brings a client at afterSeq up to date: the
// changes since afterSeq, or (afterSeq 0, behind the horizon or ahead of
// the scope) a reset and a snapshot.
func (st *stream) scopeCatchUp(ctx context.Context, scope string, afterSeq int64) error {
	var seq, horizon int64
	var out []*syncv1.SubscribeResponse
	err := st.s.store.view(ctx, func(r *reader) error {
		var err error
		seq, horizon, err = r.scopeState(ctx, scope)
		if err != nil || afterSeq <= 0 || afterSeq < horizon || afterSeq > seq {
			return err
		}
		changes, err := r.changes(ctx, scope, afterSeq, 0)
		if err != nil {
			return err
		}
		st.s.counters.rowsRead.Add(uint64(len(changes)))
		for i := range changes {
			ev, err := changes[i].Event(false, false)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if afterSeq > 0 && afterSeq >= horizon && afterSeq <= seq {
		return st.deliverAll(ctx, out)
	}
	if afterSeq > 0 {
		reset := &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Reset_{Reset_: &syncv1.ResetEvent{Scope: scope, HorizonSeq: horizon}}}
		if err := st.deliverAll(ctx, []*syncv1.SubscribeResponse{reset}); err != nil {
			return err
		}
	}
	return st.snapshot(ctx, scope, seq)
}

// snapshot sends the live records of scope as of seq, then what changed
// since, and moves the scope's cursor to the seq of that last read. It
// reads and sends the records in batches, each in a short query of its
// own, so no transaction or connection is held while the client reads.
// With a window only the newest records are read; without one a scope
// larger than MaxSnapshot is refused.
func (st *stream) snapshot(ctx context.Context, scope string, seq int64) error {
	store := st.s.store
	sent := make(map[string]bool) // keys sent by this snapshot
	if limit := st.limits[scope]; limit > 0 {
		recs, err := store.window(ctx, scope, seq, limit)
		if err != nil {
			return err
		}
		if err := st.sendSnapshot(ctx, recs, sent); err != nil {
			return err
		}
	} else {
		n, err := store.countLive(ctx, scope, seq, st.s.cfg.MaxSnapshot+1)
		if err != nil {
			return err
		}
		if n > st.s.cfg.MaxSnapshot {
			return &SnapshotTooLargeError{Scope: scope, Max: st.s.cfg.MaxSnapshot}
		}
		for after := int64(0); ; {
			recs, err := store.snapshotPage(ctx, scope, seq, after, snapshotBatch)
			if err != nil {
				return err
			}
			if err := st.sendSnapshot(ctx, recs, sent); err != nil {
				return err
			}
			if st.s.testHook != nil {
				st.s.testHook("page")
			}
			if len(recs) < snapshotBatch {
				break
			}
			after = recs[len(recs)-1].Seq
		}
	}
	// The pages hold the records unchanged since seq, as they were at seq.
	// A record that changed meanwhile left the pages (its seq is past
	// seq). The changes after seq, read from one snapshot, bring every such
	// record up to date, so that at the SyncedEvent the client holds the
	// scope's complete state as of the cursor it gets: a record already
	// sent gets its next versions as changes (none skipped), one not sent
	// yet arrives as a snapshot, and a deletion is sent only for a record
	// the client got.
	var until, horizon int64
	var changes []Change
	err := store.view(ctx, func(r *reader) error {
		var err error
		if until, horizon, err = r.scopeState(ctx, scope); err != nil || until <= seq {
			return err
		}
		if seq < horizon {
			// Pruned already (a tiny history): the records as they are now.
			changes, err = r.scopeRecords(ctx, scope, seq, true)
			return err
		}
		changes, err = r.changes(ctx, scope, seq, 0)
		return err
	})
	if err != nil {
		return err
	}
	st.s.counters.rowsRead.Add(uint64(len(changes)))
	pruned := seq < horizon
	out := make([]*syncv1.SubscribeResponse, 0, len(changes)+1)
	for i := range changes {
		c := &changes[i]
		if c.Deleted && !sent[c.Key] {
			continue // never sent: nothing to take back
		}
		// A record already sent, read from current state after pruning,
		// may skip versions: say so.
		ev, err := c.Event(!sent[c.Key] && !c.Deleted, pruned && sent[c.Key] && !c.Deleted)
		if err != nil {
			return err
		}
		sent[c.Key] = true
		out = append(out, ev)
	}
	// The snapshot is the scope's state at until: the cursor moves there
	// even if the newest changes were tombstones not sent.
	return st.deliverAll(ctx, append(out, cursorMark(scope, max(seq, until))))
}

// sendSnapshot sends records as snapshot events and notes their keys in
// sent.
func (st *stream) sendSnapshot(ctx context.Context, recs []Change, sent map[string]bool) error {
	st.s.counters.rowsRead.Add(uint64(len(recs)))
	out := make([]*syncv1.SubscribeResponse, 0, len(recs))
	for i := range recs {
		ev, err := recs[i].Event(true, false)
		if err != nil {
			return err
		}
		sent[recs[i].Key] = true
		out = append(out, ev)
	}
	return st.deliverAll(ctx, out)
}

// cursorMark is an internal, never-sent event that moves a scope cursor.
func cursorMark(scope string, seq int64) *syncv1.SubscribeResponse {
	return &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Synced{Synced: &syncv1.SyncedEvent{
		Scopes: []*syncv1.ScopeTarget{{Scope: scope, AfterSeq: seq}},
	}}}
}

// deliverAll sends catch-up and gap-fill events, advancing cursors and
// re-checking access after any change to a dep, in order.
func (st *stream) deliverAll(ctx context.Context, evs []*syncv1.SubscribeResponse) error {
	for _, ev := range evs {
		if s, ok := ev.GetEvent().(*syncv1.SubscribeResponse_Synced); ok {
			for _, sc := range s.Synced.GetScopes() {
				if cur := st.scopes[sc.GetScope()]; cur != nil && sc.GetAfterSeq() > *cur {
					*cur = sc.GetAfterSeq()
				}
			}
			continue
		}
		if r, ok := ev.GetEvent().(*syncv1.SubscribeResponse_Reset_); ok {
			// The snapshot that follows starts the scope over.
			if cur := st.scopes[r.Reset_.GetScope()]; cur != nil {
				*cur = 0
			}
		}
		info, ok := infoOf(ev)
		if !ok {
			if err := st.emit(ev); err != nil {
				return err
			}
			continue
		}
		if st.advance(info, true) {
			st.s.counters.fromPostgres.Add(1)
			if ev.GetRecord().GetCoalesced() {
				st.s.counters.coalesced.Add(1)
			}
			if err := st.emit(ev); err != nil {
				return err
			}
		}
		if gs := st.depsOf[info.key]; len(gs) > 0 {
			if err := st.recheck(ctx, gs); err != nil {
				return err
			}
		}
	}
	return nil
}

// advance decides whether a record version is new to this stream and moves
// the cursors if so. force accepts a scope seq that is not the next one
// (catch-up and coalesced events).
func (st *stream) advance(info eventInfo, force bool) bool {
	send := false
	if cur := st.scopes[info.scope]; cur != nil && info.seq > *cur {
		if force || info.seq == *cur+1 {
			*cur = info.seq
			send = true
		}
	}
	if cur := st.records[info.key]; cur != nil && info.version > *cur {
		*cur = info.version
		send = true
	}
	return send
}

// live forwards changes from the feed until ctx ends. Whatever is queued
// when the stream wakes is sent together and flushed once.
func (st *stream) live(ctx context.Context) error {
	hb := time.NewTicker(st.s.cfg.Heartbeat)
	defer hb.Stop()
	var buf []feedItem
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-hb.C:
			if now.Sub(st.lastSend) >= st.s.cfg.Heartbeat/2 {
				st.s.counters.heartbeats.Add(1)
				if err := st.emit(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Heartbeat{Heartbeat: &syncv1.HeartbeatEvent{Time: timestamppb.New(now)}}}); err != nil {
					return err
				}
			}
		case <-st.feed.wake:
			items, overflow := st.feed.take(buf)
			buf = items
			err := st.batch(ctx, items, overflow)
			if err == nil {
				err = st.sink.Flush()
			}
			// Written (or the stream is ending): the stream is done with
			// these changes.
			for _, it := range items {
				it.d.done(it.coalesced)
			}
			clear(items)
			if err != nil {
				return err
			}
			continue
		}
		if err := st.sink.Flush(); err != nil {
			return err
		}
	}
}

// batch sends what the feed held: a re-read of current state first if it
// overflowed, then the queued items.
func (st *stream) batch(ctx context.Context, items []feedItem, overflow bool) error {
	if overflow {
		st.s.counters.overflows.Add(1)
		// Changes to deps may have been lost too: check access
		// first, so nothing is re-read for a revoked target.
		if err := st.recheck(ctx, st.guards); err != nil {
			return err
		}
		// The re-read covers everything committed so far; queued
		// items are still merged below and dropped as duplicates.
		if err := st.reread(ctx); err != nil {
			return err
		}
	}
	for _, it := range items {
		if err := st.forward(ctx, it); err != nil {
			return err
		}
	}
	return nil
}

// forward sends one live change, first filling from Postgres any gap it
// reveals in a scope feed.
func (st *stream) forward(ctx context.Context, it feedItem) error {
	if it.e.ephemeral {
		if st.scopes[it.e.info.scope] == nil {
			return nil // only scope feeds carry signals
		}
		return st.emitEvent(it.e.ev)
	}
	info := it.e.info
	if cur := st.scopes[info.scope]; cur != nil && info.seq > *cur+1 {
		if !it.coalesced {
			if err := st.fillGap(ctx, info.scope, *cur, info.seq); err != nil {
				return err
			}
		} else {
			// A coalesced item skips the versions it replaced, but the gap
			// may also hide a change that never reached this instance:
			// re-read current state rather than jump past it, checking
			// access first as any re-read does.
			if err := st.recheck(ctx, st.guards); err != nil {
				return err
			}
			if err := st.reread(ctx); err != nil {
				return err
			}
		}
	}
	if st.advance(info, it.coalesced) {
		e := it.e.ev
		st.s.counters.delivered.Add(1)
		if it.coalesced {
			st.s.counters.coalesced.Add(1)
			e = NewEvent(withCoalesced(e.Msg))
		}
		if err := st.emitEvent(e); err != nil {
			return err
		}
	}
	// A change to a record an access decision read: check again before
	// the next change is forwarded. Changes of the same scope come in seq
	// order, so nothing committed after a revoking change in that scope
	// reaches the stream.
	if gs := st.depsOf[info.key]; len(gs) > 0 {
		return st.recheck(ctx, gs)
	}
	return nil
}

// watch registers a guarded target and joins the scopes of its deps.
func (st *stream) watch(g *guarded, deps []Dep) error {
	st.guards = append(st.guards, g)
	return st.addDeps(g, deps)
}

func (st *stream) addDeps(g *guarded, deps []Dep) error {
	for _, d := range deps {
		if !slices.Contains(st.depsOf[d.Key], g) {
			st.depsOf[d.Key] = append(st.depsOf[d.Key], g)
		}
		if err := st.join(d.Scope); err != nil {
			return err
		}
	}
	return nil
}

// recheck runs the guards of gs and revokes every target they no longer
// allow: a RevokedEvent, then nothing more of it.
func (st *stream) recheck(ctx context.Context, gs []*guarded) error {
	for _, g := range slices.Clone(gs) {
		if g.revoked {
			continue
		}
		deps, allowed, err := g.guard(ctx)
		if err != nil {
			return fmt.Errorf("re-check access: %w", err)
		}
		if allowed {
			if err := st.addDeps(g, deps); err != nil {
				return err
			}
			continue
		}
		g.revoked = true
		st.s.counters.revocations.Add(1)
		if g.key != "" {
			delete(st.records, g.key)
			st.recordOrder = slices.DeleteFunc(st.recordOrder, func(k string) bool { return k == g.key })
		} else {
			delete(st.scopes, g.scope)
			st.scopeOrder = slices.DeleteFunc(st.scopeOrder, func(s string) bool { return s == g.scope })
		}
		ev := &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Revoked{Revoked: &syncv1.RevokedEvent{
			Key: g.key, Scope: g.scope, Reason: "access revoked",
		}}}
		if err := st.emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// fillGap sends the changes of scope between after and before, read from
// Postgres. Seqs are taken under the scope row lock, so once seq `before`
// is committed every seq below it is committed too. If the gap was pruned
// the scope is reset to a fresh snapshot.
func (st *stream) fillGap(ctx context.Context, scope string, after, before int64) error {
	var out []*syncv1.SubscribeResponse
	pruned := false
	err := st.s.store.view(ctx, func(r *reader) error {
		_, horizon, err := r.scopeState(ctx, scope)
		if err != nil {
			return err
		}
		if after < horizon {
			pruned = true
			return nil
		}
		changes, err := r.changes(ctx, scope, after, before)
		if err != nil {
			return err
		}
		st.s.counters.rowsRead.Add(uint64(len(changes)))
		for i := range changes {
			ev, err := changes[i].Event(false, false)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fill gap %s (%d,%d): %w", scope, after, before, err)
	}
	if pruned {
		return st.scopeCatchUp(ctx, scope, after)
	}
	return st.deliverAll(ctx, out)
}

// reread brings every target up to the current state from Postgres after
// live changes were dropped (the stream's buffer overflowed, or the Hub
// could not hand them out one by one). Versions in between are skipped, so
// every record event it sends is marked coalesced.
func (st *stream) reread(ctx context.Context) error {
	var out []*syncv1.SubscribeResponse
	err := st.s.store.view(ctx, func(r *reader) error {
		out = out[:0]
		for _, scope := range st.scopeOrder {
			after := *st.scopes[scope]
			seq, _, err := r.scopeState(ctx, scope)
			if err != nil {
				return err
			}
			recs, err := r.scopeRecords(ctx, scope, after, true)
			if err != nil {
				return err
			}
			for i := range recs {
				ev, err := recs[i].Event(false, true)
				if err != nil {
					return err
				}
				out = append(out, ev)
			}
			out = append(out, cursorMark(scope, seq))
		}
		// Records after scopes, as in catchUp.
		if len(st.recordOrder) > 0 {
			recs, err := r.records(ctx, st.recordOrder)
			if err != nil {
				return err
			}
			for i := range recs {
				have := *st.records[recs[i].Key]
				if recs[i].Version <= have {
					continue
				}
				// Only a jump over versions is a coalesced event.
				ev, err := recs[i].Event(false, recs[i].Version > have+1)
				if err != nil {
					return err
				}
				out = append(out, ev)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("re-read: %w", err)
	}
	return st.deliverAll(ctx, out)
}
