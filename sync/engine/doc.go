// Package engine is the engine of Sluice: the Store that commits records and
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
// Commit order on the live path. Writers publish after their own commits,
// so NATS can carry the changes of one scope out of commit order, and a
// publication can be lost. The Hub restores commit order once per scope per
// instance: it hands changes to its streams strictly in seq order, holds
// back a change that arrives early for up to HubConfig.ReorderWait, and
// then reads the missing seqs from Postgres (a seq n that arrived proves
// every seq below n committed). A late duplicate (a relay republish) is
// dropped there. Streams thus see each scope's changes exactly once and in
// commit order, whatever the number of writers and instances.
//
// Streams. A stream joins the Hub for its scopes before it reads anything
// (the Hub's first stream of a scope waits until the NATS server has the
// subscription and reads the scope's seq as the start of its ordered feed),
// then reads its catch-up and merges the live changes queued meanwhile.
// A scope snapshot is read and sent in pages of 500 without holding a
// transaction, then brought up to date with the changes committed while
// it was read, so at the SyncedEvent the client holds the scope's whole
// state as of the cursor the event carries. A record target resumed at
// version v
// catches up with every version after v, replayed from the history (the
// current version, coalesced, when that is pruned or longer than 1024); a
// scope target resumed at seq s with every change after s (a ResetEvent
// and a snapshot when s is behind the horizon). After the catch-up, a
// record target gets
// every committed version of its record, once and in order (versions grow
// by exactly one), and a scope target every seq of its scope, gapless and
// in commit order. An event marked `coalesced` is the only exception: it
// says earlier versions were skipped because only the latest version of
// each record was sent, and the record state is still complete.
//
// Slow consumers. Each stream has a bounded buffer. When it is full it is
// coalesced to the latest version per key; when even that does not fit, it
// is dropped and the stream re-reads current state from Postgres. Fan-out
// never blocks on one stream and never drops a change silently. A stream
// gets `coalesced` only when it fell behind itself, or when the Hub could
// not replay a scope change by change (below).
//
// NATS loss. After NATS reconnects, and after nats.go reports a slow
// consumer, the Hub reads every change of each scope it follows after the
// last seq it handed out, and hands those out in order: streams see the
// exact changes, not a re-read. Where that is more than
// HubConfig.MaxPending changes, or behind the history horizon, or Postgres
// stays unreachable while changes pile up, the scope's streams re-read
// current state instead (coalesced).
//
// Delivery. A live change is decoded and encoded once per instance; every
// stream sends the same bytes (Event). A stream sends what is queued when
// it wakes and flushes its Sink once, so a busy stream pays one network
// write for many events.
//
// Live access. A target may carry the records its read decision consulted
// (Deps) and a Guard. When one of them changes the Guard runs on the
// stream's goroutine before the next change is forwarded; a target it no
// longer allows gets a RevokedEvent and nothing more. A dep in the target's
// own scope is ordered with the target's changes, so no change committed
// after the revoking one reaches the stream. Changes NATS lost reach the
// guards through the Hub's fill like any other; before a re-read of
// current state (overflow, a coalesced gap) every guard runs first.
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
package engine
