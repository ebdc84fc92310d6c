package sync

import (
	"context"
	"errors"
	"log/slog"
	gosync "sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// HubConfig configures a Hub. The zero value is valid.
type HubConfig struct {
	// Prefix is the NATS subject prefix; empty means DefaultPrefix.
	Prefix string
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Hub fans changes out from NATS to the streams of this instance. It holds
// one NATS subscription per scope while the scope has local streams, decodes
// each change once and hands it to every stream's bounded feed without
// blocking. After a NATS reconnect or a slow-consumer drop it asks every
// affected stream to re-read from Postgres. It is safe for concurrent use;
// the caller must call Close.
type Hub struct {
	nc   *nats.Conn
	subj subjects
	log  *slog.Logger

	mu     gosync.RWMutex
	scopes map[string]*hubScope

	status chan nats.Status
	stop   chan struct{}
	wg     gosync.WaitGroup
}

type hubScope struct {
	sub   *nats.Subscription
	feeds map[*feed]struct{}
	ready chan struct{} // closed once the server has the subscription
}

// NewHub starts a Hub on nc, which stays owned by the caller. The Hub
// installs nc's asynchronous error handler to detect slow consumers.
func NewHub(nc *nats.Conn, cfg HubConfig) *Hub {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		nc:     nc,
		subj:   newSubjects(cfg.Prefix),
		log:    cfg.Logger,
		scopes: make(map[string]*hubScope),
		stop:   make(chan struct{}),
	}
	h.status = nc.StatusChanged(nats.CONNECTED)
	nc.SetErrorHandler(h.asyncError)
	h.wg.Add(1)
	go h.watch()
	return h
}

// Close stops the Hub and drops its NATS subscriptions. Streams still open
// receive nothing more.
func (h *Hub) Close() {
	close(h.stop)
	h.wg.Wait()
	h.mu.Lock()
	defer h.mu.Unlock()
	for scope, hs := range h.scopes {
		_ = hs.sub.Unsubscribe()
		delete(h.scopes, scope)
	}
}

// watch re-syncs every stream after NATS reconnects: messages published
// while the connection was down never reach this instance.
func (h *Hub) watch() {
	defer h.wg.Done()
	for {
		select {
		case <-h.stop:
			return
		case _, ok := <-h.status:
			if !ok {
				return
			}
			// The flush proves the server has our subscriptions again before
			// streams re-read, so nothing can fall between.
			if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
				h.log.Warn("flush after reconnect", "err", err)
			}
			h.log.Info("nats reconnected; re-syncing streams")
			h.resyncAll()
		}
	}
}

func (h *Hub) resyncAll() {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, hs := range h.scopes {
		for f := range hs.feeds {
			f.markResync()
		}
	}
}

func (h *Hub) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) || sub == nil {
		h.log.Warn("nats async error", "err", err)
		return
	}
	h.log.Warn("nats slow consumer; re-syncing streams", "subject", sub.Subject)
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, hs := range h.scopes {
		if hs.sub == sub {
			for f := range hs.feeds {
				f.markResync()
			}
		}
	}
}

// join registers f for the changes of scope and returns once the NATS
// server has the subscription, so that anything committed after join
// returns reaches f. If NATS is unreachable join still returns: the
// reconnect re-sync covers the gap.
func (h *Hub) join(ctx context.Context, f *feed, scope string) error {
	h.mu.Lock()
	hs, ok := h.scopes[scope]
	if !ok {
		hs = &hubScope{feeds: make(map[*feed]struct{}), ready: make(chan struct{})}
		sub, err := h.nc.Subscribe(h.subj.change(scope), func(m *nats.Msg) { h.deliver(scope, m) })
		if err != nil {
			h.mu.Unlock()
			return err
		}
		// Our handler never blocks, so a deep pending queue only absorbs
		// scheduling hiccups; overflow is reported as a slow consumer.
		_ = sub.SetPendingLimits(1<<20, 256<<20)
		hs.sub = sub
		h.scopes[scope] = hs
		hs.feeds[f] = struct{}{}
		h.mu.Unlock()
		if err := flush(ctx, h.nc, 5*time.Second); err != nil && ctx.Err() == nil {
			h.log.Warn("flush subscription", "scope", scope, "err", err)
		}
		close(hs.ready)
		return ctx.Err()
	}
	hs.feeds[f] = struct{}{}
	h.mu.Unlock()
	select {
	case <-hs.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
	delete(hs.feeds, f)
	if len(hs.feeds) == 0 {
		_ = hs.sub.Unsubscribe()
		delete(h.scopes, scope)
	}
}

// deliver runs on the NATS subscription's goroutine: decode once, hand off
// to every feed, never block and never touch the database.
func (h *Hub) deliver(scope string, m *nats.Msg) {
	ev := new(syncv1.SubscribeResponse)
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		h.log.Error("decode change", "scope", scope, "err", err)
		return
	}
	var e *hubEvent
	if eph := ev.GetEphemeral(); eph != nil {
		if eph.GetScope() != scope {
			h.log.Error("malformed ephemeral event", "scope", scope)
			return
		}
		e = &hubEvent{info: eventInfo{scope: scope}, ev: ev, ephemeral: true}
	} else {
		info, ok := infoOf(ev)
		if !ok || info.scope != scope {
			h.log.Error("malformed change", "scope", scope)
			return
		}
		e = &hubEvent{info: info, ev: ev}
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	if hs := h.scopes[scope]; hs != nil {
		for f := range hs.feeds {
			f.offer(e)
		}
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
