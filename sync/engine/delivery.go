package engine

import (
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// delivery follows one change handed to the feeds of its scope on this
// instance until every stream that got it is done with it: it wrote it to
// its connection (or skipped it as not its record or already sent), it was
// coalesced away or dropped for a re-read, or the stream ended. The last
// one records the time from the change's commit to then (the instance's
// time to last delivery) and ends the fan-out span, if there is one.
type delivery struct {
	hub       *Hub
	at        time.Time  // the change's time (updated_at: its transaction's, in Postgres)
	span      trace.Span // the fan-out span; nil when not traced
	streams   int
	left      atomic.Int64
	coalesced atomic.Int64
}

// newDelivery returns the delivery of e to streams feeds, or nil when
// there is nothing to follow (a signal, or no stream).
func (h *Hub) newDelivery(e *hubEvent, streams int, span trace.Span) *delivery {
	if e.ephemeral || streams == 0 {
		return nil
	}
	d := &delivery{hub: h, at: changeTime(e.ev.Msg), span: span, streams: streams}
	d.left.Store(int64(streams))
	return d
}

// done says one stream is done with the change; coalesced when it never
// sent this version as such (replaced by a later one, or by a re-read).
// It is safe for concurrent use and does nothing on a nil delivery.
func (d *delivery) done(coalesced bool) {
	if d == nil {
		return
	}
	if coalesced {
		d.coalesced.Add(1)
	}
	if d.left.Add(-1) != 0 {
		return
	}
	elapsed := max(time.Since(d.at), 0) // clocks of Postgres and this host may differ a little
	d.hub.counters.lastDelivery.observe(elapsed)
	if d.span != nil {
		d.span.SetAttributes(
			attribute.Int("sluice.streams", d.streams),
			attribute.Int64("sluice.coalesced", d.coalesced.Load()),
			attribute.Float64("sluice.last_delivery_seconds", elapsed.Seconds()),
		)
		d.span.End()
	}
}

// changeTime is the time of a record or removed event's change.
func changeTime(ev *syncv1.SubscribeResponse) time.Time {
	if r := ev.GetRecord().GetRecord(); r != nil {
		return r.GetUpdatedAt().AsTime()
	}
	return ev.GetRemoved().GetUpdatedAt().AsTime()
}

// deliveryBounds are the upper bounds, in seconds, of the buckets of the
// time to last delivery.
var deliveryBounds = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// latencies is a histogram over deliveryBounds updated without locks.
type latencies struct {
	counts [len(deliveryBounds) + 1]atomic.Uint64 // the last one is +Inf
	sum    atomic.Int64                           // nanoseconds
}

func (l *latencies) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(deliveryBounds) && s > deliveryBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sum.Add(int64(d))
}

// Histogram is a snapshot of a latency histogram in seconds, in the shape
// Prometheus takes: Buckets maps each upper bound to the number of
// observations at or below it.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

func (l *latencies) snapshot() Histogram {
	h := Histogram{Buckets: make(map[float64]uint64, len(deliveryBounds))}
	var n uint64
	for i, b := range deliveryBounds {
		n += l.counts[i].Load()
		h.Buckets[b] = n
	}
	h.Count = n + l.counts[len(deliveryBounds)].Load()
	h.Sum = time.Duration(l.sum.Load()).Seconds()
	return h
}
