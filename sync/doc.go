// Package sync is the engine of Sluice: the Store that commits records and
// their changes to PostgreSQL, the Publisher and Relay that carry committed
// changes to NATS, the Hub that fans them out inside one instance, and the
// Streamer that merges catch-up reads with live changes for each stream.
//
// It shadows the standard library's sync package; import it with an alias
// (for example sluicesync) where both are needed.
//
// # Guarantees
//
// Ordering. A record's version starts at 1 and grows by exactly one with
// every change. A scope's seq is taken with UPDATE ... RETURNING on the scope
// row inside the writing transaction, after the record row is locked, so seq
// order equals commit order within a scope and seqs have no holes: when seq
// n is visible, every seq below n is visible too. (A sequence or BIGSERIAL
// would not give this: two transactions can commit out of id order.)
//
// Durability before delivery. A change is sent only after its transaction
// committed. A Store.Update returns only after the commit.
//
// At-least-once publication. After the commit the Publisher sends each
// change to NATS and, once a flush round trip proves the server has it,
// marks it published. A change left unpublished (crash between commit and
// publish, NATS outage, full ack queue) is sent again by a Relay after a
// grace period. Duplicates are possible; streams drop them by version and
// seq.
//
// Streams. A stream joins the Hub for its scopes (and waits until the NATS
// server has the subscription) before it reads anything, then reads its
// catch-up from one repeatable-read snapshot and merges the live changes
// queued meanwhile. Per record target, versions only grow. Per scope target,
// seqs are delivered gapless in commit order: a gap seen on the live path is
// filled from Postgres, never skipped. Every event marked `coalesced` is the
// only exception: it says earlier versions were skipped because only the
// latest version of each record was sent, and the record state is still
// complete.
//
// Slow consumers. Each stream has a bounded buffer. When it is full it is
// coalesced to the latest version per key; when even that does not fit, it
// is dropped and the stream re-reads current state from Postgres. Fan-out
// never blocks on one stream and never drops a change silently.
//
// NATS loss. After NATS reconnects, every stream of the instance re-reads
// its targets from the last seq and version it delivered. A slow-consumer
// drop reported by nats.go does the same for the affected scope.
//
// Live access. A target may carry the records its read decision consulted
// (Deps) and a Guard. When one of them changes the Guard runs on the
// stream's goroutine before the next change is forwarded; a target it no
// longer allows gets a RevokedEvent and nothing more. A dep in the target's
// own scope is ordered with the target's changes, so no change committed
// after the revoking one reaches the stream. After NATS trouble, overflow or
// a coalesced gap, every guard runs before anything is re-read.
//
// Ephemeral signals (PublishEphemeral: typing) travel on the scope's
// subject, are never stored, reach only streams open at the time, at most
// once, and are the first thing dropped when a buffer coalesces.
//
// Idempotency. An Update whose context carries an Idempotency records the
// key in its transaction; a later attempt with the same key returns the
// first attempt's changes and writes nothing.
//
// History. Changes are kept for a bounded time and count per scope (see
// RelayConfig). Resuming a scope from before its horizon yields a
// ResetEvent and a fresh snapshot instead of a change list.
package sync
