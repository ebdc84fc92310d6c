package engine

import (
	"sync/atomic"
	"time"
)

// HubStats counts what a Hub did since it started. Counters only grow.
type HubStats struct {
	Scopes       int    // scopes with a NATS subscription now
	Received     uint64 // changes received from NATS
	Early        uint64 // changes that arrived before a lower seq and were held back
	Duplicates   uint64 // changes dropped as already handed out (relay republishes, fills)
	Fills        uint64 // reads of missing changes from Postgres
	Filled       uint64 // changes handed out from those reads
	FillFailures uint64 // fills that failed (Postgres unreachable); retried
	Resets       uint64 // scopes whose streams were told to re-read (too much missed)
	Degraded     bool   // NATS does not answer: scopes are followed from Postgres
	// LastDelivery is, per change handed out, the time from its commit
	// (its updated_at) to its write to the last stream on this instance
	// that got it.
	LastDelivery Histogram
}

// hubCounters are the Hub's counters, updated without locks.
type hubCounters struct {
	received, early, duplicates, fills, filled, fillFailures, resets atomic.Uint64
	degraded                                                         atomic.Bool
	degradedSince                                                    atomic.Int64 // unix nanoseconds; 0 while NATS answers
	lastDelivery                                                     latencies
}

// DegradedSince returns when NATS stopped answering the Hub's health check,
// or the zero time while it answers. It is safe for concurrent use.
func (h *Hub) DegradedSince() time.Time {
	if ns := h.counters.degradedSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Stats returns the Hub's counters. It is safe for concurrent use.
func (h *Hub) Stats() HubStats {
	c := &h.counters
	return HubStats{
		Scopes:       h.Scopes(),
		Received:     c.received.Load(),
		Early:        c.early.Load(),
		Duplicates:   c.duplicates.Load(),
		Fills:        c.fills.Load(),
		Filled:       c.filled.Load(),
		FillFailures: c.fillFailures.Load(),
		Resets:       c.resets.Load(),
		Degraded:     c.degraded.Load(),
		LastDelivery: c.lastDelivery.snapshot(),
	}
}

// StreamStats counts the streams of a Streamer. Counters only grow; Open*
// are gauges.
type StreamStats struct {
	Open         int64  // streams open now
	OpenRecords  int64  // record targets of the open streams
	OpenScopes   int64  // scope targets of the open streams
	Delivered    uint64 // live changes sent (catch-up not included)
	Coalesced    uint64 // events sent marked coalesced
	Overflows    uint64 // re-reads of current state after a buffer overflow
	Revocations  uint64 // targets revoked while streaming
	Heartbeats   uint64 // heartbeats sent
	FromPostgres uint64 // record events sent from Postgres reads (catch-ups, gap fills, re-reads)
	RowsRead     uint64 // records and changes read for catch-ups and gap fills
}

type streamCounters struct {
	open, openRecords, openScopes                                                    atomic.Int64
	delivered, coalesced, overflows, revocations, heartbeats, fromPostgres, rowsRead atomic.Uint64
}

// Stats returns the Streamer's counters. It is safe for concurrent use.
func (s *Streamer) Stats() StreamStats {
	c := &s.counters
	return StreamStats{
		Open:         c.open.Load(),
		OpenRecords:  c.openRecords.Load(),
		OpenScopes:   c.openScopes.Load(),
		Delivered:    c.delivered.Load(),
		Coalesced:    c.coalesced.Load(),
		Overflows:    c.overflows.Load(),
		Revocations:  c.revocations.Load(),
		Heartbeats:   c.heartbeats.Load(),
		FromPostgres: c.fromPostgres.Load(),
		RowsRead:     c.rowsRead.Load(),
	}
}

// PublisherStats counts what a Publisher did. Counters only grow.
type PublisherStats struct {
	Published    uint64 // changes handed to NATS
	Failed       uint64 // changes that could not be encoded or published (the relay sends them)
	Marked       uint64 // changes marked published after a NATS round trip
	MarkFailures uint64 // batches whose mark failed (the relay sends them again)
}

type publisherCounters struct {
	published, failed, marked, markFailures atomic.Uint64
}

// Stats returns the Publisher's counters. It is safe for concurrent use.
func (p *Publisher) Stats() PublisherStats {
	c := &p.counters
	return PublisherStats{Published: c.published.Load(), Failed: c.failed.Load(), Marked: c.marked.Load(), MarkFailures: c.markFailures.Load()}
}

// RelayStats counts what a Relay did. Counters only grow.
type RelayStats struct {
	Republished uint64 // changes published again after their grace period
	Pruned      uint64 // history rows deleted
	Failures    uint64 // passes that failed
}

type relayCounters struct {
	republished, pruned, failures atomic.Uint64
}

// Stats returns the Relay's counters. It is safe for concurrent use.
func (r *Relay) Stats() RelayStats {
	c := &r.counters
	return RelayStats{Republished: c.republished.Load(), Pruned: c.pruned.Load(), Failures: c.failures.Load()}
}
