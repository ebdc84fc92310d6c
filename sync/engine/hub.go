package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// HubConfig configures a Hub. The zero value is valid.
type HubConfig struct {
	// Prefix is the NATS subject prefix; empty means DefaultPrefix.
	Prefix string
	// ReorderWait is how long the Hub holds the changes of a scope behind
	// a missing seq, waiting for it to arrive from NATS, before it reads
	// the missing changes from Postgres. Writers publish after their own
	// commits, so changes of one scope can arrive a little out of commit
	// order; a lost publication is sent again by a Relay only seconds
	// later. Zero means 10ms.
	ReorderWait time.Duration
	// HealthEvery is how often the Hub checks NATS with a flush round
	// trip; HealthTimeout bounds the wait for the answer. While NATS does
	// not answer, streams are served from Postgres at every check. Zero
	// means 1s for both.
	HealthEvery   time.Duration
	HealthTimeout time.Duration
	// MaxPending bounds the changes of one scope held behind a gap (and
	// read in one fill). Beyond it the scope's streams re-read current
	// state from Postgres (coalesced) instead. Zero means 8192.
	MaxPending int
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// TracerProvider, when set, traces the fan-out of every change whose
	// message carries a trace context: a span per change per instance, a
	// child of (and linked to) the publication in the write's trace, that
	// ends when the last stream here is done with the change (see
	// HubStats.LastDelivery).
	TracerProvider trace.TracerProvider
}

// Hub fans changes out from NATS to the streams of this instance. It holds
// one NATS subscription per scope while the scope has local streams, and
// restores commit order there, once per scope per instance: changes are
// handed to the streams strictly in seq order, a seq that does not arrive
// within ReorderWait is read from Postgres, and after a NATS reconnect or a
// slow-consumer drop everything after the last seq handed out is read from
// Postgres. Streams therefore see every change of their scopes exactly once
// and in commit order. Each change is decoded and encoded once and handed
// to every stream's bounded feed without blocking.
//
// It is safe for concurrent use; the caller must call Run.
type Hub struct {
	nc     *nats.Conn
	store  *Store
	subj   subjects
	cfg    HubConfig
	log    *slog.Logger
	tracer trace.Tracer

	mu     sync.RWMutex
	scopes map[string]*hubScope

	fillMu      sync.Mutex
	fillList    []*hubScope // scopes waiting for a fill, each once
	fillWake    chan struct{}
	fillFailing atomic.Bool // the last fill failed: an outage is logged

	status chan nats.Status
	stop   chan struct{}
	wg     sync.WaitGroup

	counters hubCounters

	// testHookEstablish, when set, runs after a scope's subscription is in
	// place and before its seq is read.
	testHookEstablish func(scope string)
}

// NewHub returns a Hub on nc, which stays owned by the caller; store is
// where it reads changes that did not arrive. The Hub installs nc's
// asynchronous error handler to detect slow consumers. Run runs it.
func NewHub(nc *nats.Conn, store *Store, cfg HubConfig) *Hub {
	if cfg.ReorderWait <= 0 {
		cfg.ReorderWait = 10 * time.Millisecond
	}
	if cfg.HealthEvery <= 0 {
		cfg.HealthEvery = time.Second
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		nc:       nc,
		store:    store,
		subj:     newSubjects(cfg.Prefix),
		cfg:      cfg,
		log:      cfg.Logger,
		scopes:   make(map[string]*hubScope),
		fillWake: make(chan struct{}, 1),
		tracer:   tracerOf(cfg.TracerProvider),
		stop:     make(chan struct{}),
	}
	h.status = nc.StatusChanged(nats.CONNECTED)
	nc.SetErrorHandler(h.asyncError)
	return h
}

// Run checks NATS, reads what it missed and fills gaps until ctx ends,
// then drops the Hub's NATS subscriptions: streams still open receive
// nothing more. Streams may join before Run starts; gaps are filled once
// it runs. Run returns nil; call it once.
func (h *Hub) Run(ctx context.Context) error {
	h.wg.Add(2)
	go h.watch()
	go h.fillLoop()
	<-ctx.Done()
	close(h.stop)
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	for scope, hs := range h.scopes {
		hs.close()
		delete(h.scopes, scope)
	}
	return nil
}

// watch reads what this instance missed after NATS reconnects (messages
// published while the connection was down never arrive), and checks NATS
// every HealthEvery with a flush round trip. While NATS does not answer
// (down, or stalled without a disconnect) the Hub follows its scopes from
// Postgres instead, reading what is new at every check, so streams go on
// receiving changes in order with a delay bounded by the check interval.
func (h *Hub) watch() {
	defer h.wg.Done()
	tick := time.NewTicker(h.cfg.HealthEvery)
	defer tick.Stop()
	degraded := false
	for {
		select {
		case <-h.stop:
			return
		case _, ok := <-h.status:
			if !ok {
				h.status = nil // closed with the connection; the ticker goes on
				continue
			}
			// The flush proves the server has our subscriptions again
			// before the fills read, so nothing can fall between.
			if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
				h.log.Warn("flush after reconnect", "err", err)
			}
			h.log.Info("nats reconnected; reading missed changes")
			h.fillAll()
		case <-tick.C:
			err := h.nc.FlushTimeout(h.cfg.HealthTimeout)
			switch {
			case err != nil:
				h.counters.degraded.Store(true)
				if !degraded {
					h.counters.degradedSince.Store(time.Now().UnixNano())
					h.log.Warn("nats not answering; following scopes from Postgres", "err", err)
				}
				degraded = true
				h.fillAll()
			case degraded:
				degraded = false
				h.counters.degraded.Store(false)
				h.counters.degradedSince.Store(0)
				h.log.Info("nats answering again")
				h.fillAll() // what was published during the stall may be lost
			}
		}
	}
}

// fillAll queues a fill of everything after the last seq handed out, for
// every scope that has changes this instance has not handed out: one
// query finds them, so following many quiet scopes from Postgres stays
// cheap. If that query fails, every scope is queued (each fill retries).
func (h *Hub) fillAll() {
	h.mu.RLock()
	all := make([]*hubScope, 0, len(h.scopes))
	names := make([]string, 0, len(h.scopes))
	for name, hs := range h.scopes {
		all = append(all, hs)
		names = append(names, name)
	}
	h.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	seqs, err := h.store.scopeSeqs(ctx, names)
	cancel()
	for _, hs := range all {
		hs.mu.Lock()
		behind := err != nil || hs.next == 0 || seqs[hs.scope] >= hs.next
		hs.mu.Unlock()
		if behind {
			h.queueFill(hs, true)
		}
	}
}

func (h *Hub) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) || sub == nil {
		h.log.Warn("nats async error", "err", err)
		return
	}
	h.log.Warn("nats slow consumer; reading missed changes", "subject", sub.Subject)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, hs := range h.scopes {
		if hs.sub == sub {
			h.queueFill(hs, true)
		}
	}
}

// join registers f for the changes of scope and returns once the Hub is
// ready to hand f every change committed after join returns, in order. The
// first stream of a scope on this instance subscribes, waits until the NATS
// server has the subscription and reads the scope's seq as the point the
// ordered feed starts from. If NATS is unreachable join still returns: the
// reconnect fill covers the gap.
func (h *Hub) join(ctx context.Context, f *feed, scope string) error {
	h.mu.Lock()
	hs, ok := h.scopes[scope]
	if !ok {
		hs = &hubScope{h: h, scope: scope, feeds: make(map[*feed]struct{}), pending: make(map[int64]*hubEvent), ready: make(chan struct{})}
		sub, err := h.nc.Subscribe(h.subj.change(scope), hs.receive)
		if err != nil {
			h.mu.Unlock()
			return err
		}
		// Our handler never blocks, so a deep pending queue only absorbs
		// scheduling hiccups; overflow is reported as a slow consumer.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		hs.sub = sub
		h.scopes[scope] = hs
	}
	hs.mu.Lock()
	hs.feeds[f] = struct{}{}
	hs.mu.Unlock()
	h.mu.Unlock()
	if !ok {
		// Established apart from ctx: other streams may be waiting for it.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := h.establish(sctx, hs)
		cancel()
		if err != nil {
			h.mu.Lock()
			if h.scopes[scope] == hs {
				delete(h.scopes, scope)
			}
			h.mu.Unlock()
			hs.close()
		}
		hs.err = err
		close(hs.ready)
	}
	select {
	case <-hs.ready:
		return hs.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// establish makes sure the NATS server has hs's subscription, then reads
// the scope's seq: every change after it arrives through NATS (or is
// filled), every change up to it is in any read that starts later. When
// NATS does not confirm the subscription within HealthTimeout (down or
// stalled), the stream is not kept waiting: the scope starts from
// Postgres and is filled from there at once, and the Hub's health check
// keeps following it from Postgres until NATS answers again.
func (h *Hub) establish(ctx context.Context, hs *hubScope) error {
	fctx, cancel := context.WithTimeout(ctx, h.cfg.HealthTimeout)
	flushErr := flush(fctx, h.nc, h.cfg.HealthTimeout)
	cancel()
	if flushErr != nil {
		h.log.Warn("nats did not confirm a subscription; following the scope from Postgres meanwhile", "scope", hs.scope, "err", flushErr)
	}
	if h.testHookEstablish != nil {
		h.testHookEstablish(hs.scope)
	}
	seq, err := h.store.scopeSeq(ctx, hs.scope)
	if err != nil {
		return err
	}
	hs.start(seq)
	if flushErr != nil {
		h.queueFill(hs, true)
	}
	return nil
}

// leave unregisters f from scope and drops the NATS subscription when no
// local stream needs it any more.
func (h *Hub) leave(f *feed, scope string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs, ok := h.scopes[scope]
	if !ok {
		return
	}
	hs.mu.Lock()
	delete(hs.feeds, f)
	empty := len(hs.feeds) == 0
	hs.mu.Unlock()
	if empty {
		hs.close()
		delete(h.scopes, scope)
	}
}

// Scopes returns how many scopes this instance holds NATS subscriptions for.
func (h *Hub) Scopes() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.scopes)
}

// PublishEphemeral sends a signal that is never stored (e.g. typing) to
// every stream following scope, on every instance. Delivery is best effort:
// at most once, and only to streams open now.
func (h *Hub) PublishEphemeral(scope, kind, from string) error {
	data, err := proto.Marshal(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Ephemeral{Ephemeral: &syncv1.EphemeralEvent{
		Scope: scope, Kind: kind, From: from, At: timestamppb.Now(),
	}}})
	if err != nil {
		return err
	}
	return h.nc.Publish(h.subj.change(scope), data)
}

// queueFill asks the fill loop to read the missing changes of hs; tail
// reads everything after the last seq handed out, not just up to the
// newest change held back. It never blocks.
func (h *Hub) queueFill(hs *hubScope, tail bool) {
	hs.mu.Lock()
	hs.tail = hs.tail || tail
	queued := hs.queued
	hs.queued = true
	hs.mu.Unlock()
	if queued {
		return
	}
	h.fillMu.Lock()
	h.fillList = append(h.fillList, hs)
	h.fillMu.Unlock()
	select {
	case h.fillWake <- struct{}{}:
	default:
	}
}

// fillLoop reads missing changes from Postgres, one scope at a time, for
// every stream of the instance at once.
func (h *Hub) fillLoop() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case <-h.fillWake:
		}
		for {
			h.fillMu.Lock()
			if len(h.fillList) == 0 {
				h.fillMu.Unlock()
				break
			}
			hs := h.fillList[0]
			h.fillList[0] = nil
			h.fillList = h.fillList[1:]
			h.fillMu.Unlock()
			h.fill(hs)
			select {
			case <-h.stop:
				return
			default:
			}
		}
	}
}

// fill reads the changes hs lacks and hands them out in order.
func (h *Hub) fill(hs *hubScope) {
	hs.mu.Lock()
	hs.queued = false
	if hs.closed || hs.next == 0 {
		hs.tail = false
		hs.mu.Unlock()
		return
	}
	after, upto := hs.next-1, hs.maxSeen
	if hs.tail {
		upto = 0
	}
	hs.tail = false
	if upto != 0 && upto <= after {
		hs.mu.Unlock()
		return // arrived meanwhile
	}
	hs.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	got, err := h.store.missing(ctx, hs.scope, after, upto, h.cfg.MaxPending)
	cancel()
	h.counters.fills.Add(1)
	if err != nil {
		h.counters.fillFailures.Add(1)
		// Postgres is unreachable: try again later; streams keep what
		// they have and get nothing out of order meanwhile. Logged once
		// per outage, not once per scope and attempt.
		if !h.fillFailing.Swap(true) {
			h.log.Warn("read missing changes; retrying until Postgres answers", "scope", hs.scope, "after", after, "err", err)
		}
		hs.mu.Lock()
		hs.retry = time.AfterFunc(250*time.Millisecond, func() { h.queueFill(hs, upto == 0) })
		hs.mu.Unlock()
		return
	}
	if h.fillFailing.Swap(false) {
		h.log.Info("reading missing changes again")
	}
	events := make([]*hubEvent, 0, len(got.changes))
	for i := range got.changes {
		e, err := changeEvent(&got.changes[i])
		if err != nil {
			h.log.Error("encode change", "scope", hs.scope, "seq", got.changes[i].Seq, "err", err)
			got.pruned = true // cannot be sent: let the streams re-read
			break
		}
		events = append(events, e)
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.closed {
		return
	}
	if got.pruned || got.truncated {
		// Too much to hand out change by change, or no longer in the
		// history: every stream re-reads current state, marked coalesced.
		hs.reset(got.seq)
		return
	}
	for _, e := range events {
		if e.info.seq == hs.next {
			hs.emit(e)
			hs.next++
			h.counters.filled.Add(1)
		}
	}
	hs.drain()
}

// hubScope is the ordered feed of one scope on one instance.
type hubScope struct {
	h     *Hub
	scope string
	sub   *nats.Subscription
	ready chan struct{} // closed once the scope can be followed
	err   error         // why it cannot; set before ready is closed

	mu      sync.Mutex
	feeds   map[*feed]struct{}
	next    int64               // the next seq to hand out; 0 until start
	pending map[int64]*hubEvent // arrived ahead of next
	maxSeen int64
	timer   *time.Timer // armed while a gap waits for ReorderWait
	retry   *time.Timer // armed while a failed fill waits to run again
	queued  bool        // on the fill list
	tail    bool        // the next fill reads everything after next-1
	closed  bool
}

// receive runs on the NATS subscription's goroutine: decode once, order,
// hand off to every feed; never block and never touch the database.
func (hs *hubScope) receive(m *nats.Msg) {
	ev := new(syncv1.SubscribeResponse)
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		hs.h.log.Error("decode change", "scope", hs.scope, "err", err)
		return
	}
	var e *hubEvent
	if eph := ev.GetEphemeral(); eph != nil {
		if eph.GetScope() != hs.scope {
			hs.h.log.Error("malformed ephemeral event", "scope", hs.scope)
			return
		}
		e = &hubEvent{info: eventInfo{scope: hs.scope}, ev: encodedEvent(ev, m.Data), ephemeral: true}
	} else {
		info, ok := infoOf(ev)
		if !ok || info.scope != hs.scope || info.seq <= 0 {
			hs.h.log.Error("malformed change", "scope", hs.scope)
			return
		}
		e = &hubEvent{info: info, ev: encodedEvent(ev, m.Data)}
	}
	hs.h.counters.received.Add(1)
	if len(m.Header) > 0 {
		if pub := trace.SpanContextFromContext(propagator.Extract(context.Background(), natsCarrier(m.Header))); pub.IsValid() {
			_, e.span = hs.h.tracer.Start(trace.ContextWithRemoteSpanContext(context.Background(), pub), "sluice.fanout",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.Link{SpanContext: pub}),
				trace.WithAttributes(attribute.String("sluice.scope", hs.scope), attribute.Int64("sluice.seq", e.info.seq)))
		}
	}
	hs.mu.Lock()
	hs.offer(e)
	// Handed out now, the span ends with the delivery (emit). Held back
	// for an earlier seq or a duplicate: it ends here; a held-back change
	// is timed but not traced when it is handed out later.
	span := e.span
	e.span = nil
	streams := len(hs.feeds)
	hs.mu.Unlock()
	if span != nil {
		span.SetAttributes(attribute.Int("sluice.streams", streams), attribute.Bool("sluice.handed_out", false))
		span.End()
	}
}

// offer orders e into the feed. Caller holds mu.
func (hs *hubScope) offer(e *hubEvent) {
	if hs.closed {
		return
	}
	if e.ephemeral {
		hs.emit(e) // signals are not ordered with changes
		return
	}
	seq := e.info.seq
	if seq > hs.maxSeen {
		hs.maxSeen = seq
	}
	if hs.next != 0 && seq < hs.next {
		hs.h.counters.duplicates.Add(1)
		return // a duplicate: a relay republish, or filled already
	}
	if seq == hs.next {
		hs.emit(e)
		hs.next++
		hs.drain()
		return
	}
	hs.pending[seq] = e
	hs.h.counters.early.Add(1)
	if len(hs.pending) > hs.h.cfg.MaxPending {
		// Held back too long (Postgres unreachable for the fill): give up
		// change by change; the streams re-read current state.
		hs.h.log.Warn("too many changes held back; streams re-read", "scope", hs.scope, "held", len(hs.pending))
		hs.reset(hs.maxSeen)
		return
	}
	if hs.next != 0 {
		hs.armGap()
	}
}

// start sets where the ordered feed begins: after seq. Changes up to seq
// that arrived meanwhile are dropped, since every stream's catch-up read
// starts later and contains them.
func (hs *hubScope) start(seq int64) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.next = seq + 1
	for s := range hs.pending {
		if s <= seq {
			delete(hs.pending, s)
		}
	}
	hs.drain()
}

// drain hands out the held-back changes that are next in order, and waits
// for the rest. Caller holds mu.
func (hs *hubScope) drain() {
	for {
		e, ok := hs.pending[hs.next]
		if !ok {
			break
		}
		delete(hs.pending, hs.next)
		hs.emit(e)
		hs.next++
	}
	if len(hs.pending) == 0 {
		if hs.timer != nil {
			hs.timer.Stop()
			hs.timer = nil
		}
		return
	}
	hs.armGap()
}

// armGap starts the wait for a missing seq, unless one is running. Caller
// holds mu.
func (hs *hubScope) armGap() {
	if hs.timer != nil {
		return
	}
	hs.timer = time.AfterFunc(hs.h.cfg.ReorderWait, func() {
		hs.mu.Lock()
		hs.timer = nil
		gap := len(hs.pending) > 0 && !hs.closed
		hs.mu.Unlock()
		if gap {
			hs.h.queueFill(hs, false)
		}
	})
}

// reset gives up on handing out the changes up to seq one by one: every
// feed re-reads current state from Postgres, and the ordered feed goes on
// after seq. Caller holds mu.
func (hs *hubScope) reset(seq int64) {
	hs.h.counters.resets.Add(1)
	for f := range hs.feeds {
		f.markOverflow()
	}
	if seq+1 > hs.next {
		hs.next = seq + 1
	}
	for s := range hs.pending {
		if s < hs.next {
			delete(hs.pending, s)
		}
	}
	hs.drain()
}

// emit hands e to every feed, following its delivery. Caller holds mu.
func (hs *hubScope) emit(e *hubEvent) {
	span := e.span
	e.span = nil
	if span != nil {
		span.SetAttributes(attribute.Bool("sluice.handed_out", true))
	}
	d := hs.h.newDelivery(e, len(hs.feeds), span)
	if d == nil && span != nil {
		span.SetAttributes(attribute.Int("sluice.streams", 0))
		span.End()
	}
	for f := range hs.feeds {
		f.offer(e, d)
	}
}

// close drops the subscription and stops the timers.
func (hs *hubScope) close() {
	hs.mu.Lock()
	hs.closed = true
	if hs.timer != nil {
		hs.timer.Stop()
	}
	if hs.retry != nil {
		hs.retry.Stop()
	}
	hs.mu.Unlock()
	if hs.sub != nil {
		_ = hs.sub.Unsubscribe()
	}
}

// changeEvent is the hub event of a change read from Postgres.
func changeEvent(c *Change) (*hubEvent, error) {
	ev, err := c.Event(false, false)
	if err != nil {
		return nil, err
	}
	info, _ := infoOf(ev)
	return &hubEvent{info: info, ev: NewEvent(ev)}, nil
}
