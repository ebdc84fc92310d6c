package engine

import (
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// hubEvent is a change decoded once per instance and shared, read-only, by
// every stream that receives it.
type hubEvent struct {
	info      eventInfo
	ev        *Event
	ephemeral bool // a signal, not a record change: no key, version or seq

	// span is the fan-out span of a change received with a trace context,
	// until the change is handed out (then its delivery ends it). Guarded
	// by the hubScope's mu.
	span trace.Span
}

type feedItem struct {
	e         *hubEvent
	coalesced bool
	d         *delivery // told when the stream is done with the item; may be nil
}

// feed is the bounded buffer between the Hub and one stream. offer never
// blocks: when the buffer is full it keeps only the latest version per key
// (marking what it kept as coalesced), and when even that does not fit it
// drops the buffer and flags the stream to re-read from Postgres. Nothing is
// ever dropped silently.
type feed struct {
	limit int

	mu       sync.Mutex
	items    []feedItem
	overflow bool // buffer dropped: re-read current state from Postgres
	wake     chan struct{}

	coalesces int // times the buffer was coalesced (for tests and metrics)
}

func newFeed(limit int) *feed {
	return &feed{limit: limit, wake: make(chan struct{}, 1)}
}

func (f *feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// offer queues e for the stream, to tell d when the stream is done with
// it. It is called from NATS callbacks and must not block.
func (f *feed) offer(e *hubEvent, d *delivery) {
	f.mu.Lock()
	if !f.overflow {
		if len(f.items) >= f.limit {
			f.coalesce()
		}
		if len(f.items) >= f.limit {
			f.dropAll()
			f.overflow = true
			d.done(true)
		} else {
			f.items = append(f.items, feedItem{e: e, d: d})
		}
	} else {
		d.done(true) // the stream re-reads current state
	}
	f.mu.Unlock()
	f.signal()
}

// dropAll empties the queue; the stream re-reads current state instead.
// Caller holds mu.
func (f *feed) dropAll() {
	for _, it := range f.items {
		it.d.done(true)
	}
	clear(f.items)
	f.items = f.items[:0]
}

// discard drops what is queued when the stream ends, after it left every
// scope (nothing is offered any more).
func (f *feed) discard() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.items {
		it.d.done(false)
	}
	clear(f.items)
	f.items = nil
}

// coalesce keeps the latest queued version of each key, in the order of
// those latest versions, and marks them coalesced. Caller holds mu.
func (f *feed) coalesce() {
	f.coalesces++
	seen := make(map[string]struct{}, len(f.items))
	kept := make([]feedItem, 0, len(f.items))
	for i := len(f.items) - 1; i >= 0; i-- {
		it := f.items[i]
		if it.e.ephemeral {
			continue // best effort by contract: dropped first under load
		}
		if _, dup := seen[it.e.info.key]; dup {
			it.d.done(true)
			continue
		}
		seen[it.e.info.key] = struct{}{}
		it.coalesced = true
		kept = append(kept, it)
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	clear(f.items[len(kept):])
	f.items = append(f.items[:0], kept...)
}

// markOverflow drops the queue and asks the stream to re-read current state
// from Postgres, as if its buffer had overflowed: the Hub could not hand
// out some changes one by one (see hubScope.reset).
func (f *feed) markOverflow() {
	f.mu.Lock()
	f.dropAll()
	f.overflow = true
	f.mu.Unlock()
	f.signal()
}

// take returns the queued items and whether the stream must re-read current
// state, and resets both. It is called only by the stream's own goroutine.
func (f *feed) take(buf []feedItem) (items []feedItem, overflow bool) {
	f.mu.Lock()
	items = append(buf[:0], f.items...)
	clear(f.items)
	f.items = f.items[:0]
	overflow = f.overflow
	f.overflow = false
	f.mu.Unlock()
	return items, overflow
}
