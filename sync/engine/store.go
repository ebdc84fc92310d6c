package engine

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Notifier is told about every committed change, right after the commit,
// with the context of the write (its trace). Notify must not block; the
// Publisher is the production Notifier.
type Notifier interface {
	Notify(ctx context.Context, changes []Change)
}

// StoreConfig configures a Store. The zero value is valid.
type StoreConfig struct {
	// Notifier receives committed changes. When nil, changes stay
	// unpublished until a Relay publishes them.
	Notifier Notifier
	// Attempts bounds how often Update runs a transaction that lost a
	// serialization or deadlock race. Zero means 4.
	Attempts int
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// TracerProvider, when set, traces every Update (a span around the
	// transaction, with its commit).
	TracerProvider trace.TracerProvider
}

// Store keeps records, scopes, changes, jobs and idempotency records in
// PostgreSQL (sessions are the auth package's). It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	notifier Notifier
	attempts int
	log      *slog.Logger
	tracer   trace.Tracer

	// testHookCommit, when set, ends the transaction instead of COMMIT: a
	// test stands in for a connection lost while COMMIT was in flight.
	testHookCommit func(ctx context.Context, tx *txConn) error
}

// NewStore returns a Store on pool. The caller keeps ownership of pool.
func NewStore(pool *pgxpool.Pool, cfg StoreConfig) *Store {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, notifier: cfg.Notifier, attempts: cfg.Attempts, log: cfg.Logger, tracer: tracerOf(cfg.TracerProvider)}
}

// Pool returns the pool the Store uses.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Update runs fn in one read-committed transaction on behalf of actor and
// commits every record fn wrote together with their changes. After the
// commit the changes go to the Notifier. fn may run more than once when the
// transaction loses a serialization or deadlock race, so it must have no
// effect outside tx. Update returns fn's error unchanged (after rolling
// back), ErrRetry when every attempt lost a race, or a wrapped database
// error.
//
// If ctx carries an Idempotency (WithIdempotency), the attempt is recorded
// in the same transaction; a later attempt with the same key returns the
// original changes without running fn or writing anything (Message is nil
// in replayed changes: decode Payload), and ErrIdempotencyMismatch if the
// key was used for another request.
func (s *Store) Update(ctx context.Context, actor string, fn func(ctx context.Context, tx *Tx) error) (changes []Change, err error) {
	ctx, span := s.tracer.Start(ctx, "sluice.update")
	defer func() {
		span.SetAttributes(attribute.Int("sluice.changes", len(changes)))
		endSpan(span, err)
	}()
	for attempt := 1; attempt <= s.attempts; attempt++ {
		changes, err = s.update(ctx, actor, fn)
		if errors.Is(err, errReplay) {
			return changes, nil
		}
		if err == nil {
			if s.notifier != nil && len(changes) > 0 {
				s.notifier.Notify(ctx, changes)
			}
			return changes, nil
		}
		if !errors.Is(err, ErrRetry) || ctx.Err() != nil {
			return nil, err
		}
		// Back off a little, with jitter, so racing writers spread out.
		d := time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	return nil, err
}

func (s *Store) update(ctx context.Context, actor string, fn func(ctx context.Context, tx *Tx) error) ([]Change, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", translate(err))
	}
	// BEGIN goes with the first statement, in one round trip (txConn).
	ptx := &txConn{conn: conn}
	defer ptx.release(context.WithoutCancel(ctx))
	tx := &Tx{tx: ptx, actor: actor}
	id, idem := idempotencyFrom(ctx)
	if idem {
		prior, replay, err := tx.claim(ctx, id)
		if err != nil {
			return nil, err
		}
		if replay {
			return prior, errReplay
		}
	}
	if err := fn(ctx, tx); err != nil {
		return nil, err
	}
	// The idempotency record, if any, travels with COMMIT.
	var final string
	var args []any
	if idem {
		if final, args, err = tx.record(id); err != nil {
			return nil, err
		}
	}
	cctx, span := s.tracer.Start(ctx, "sluice.commit")
	if s.testHookCommit != nil {
		if final != "" {
			_, err = ptx.Exec(cctx, final, args...)
		}
		if err == nil {
			err = s.testHookCommit(cctx, ptx)
		}
	} else {
		err = ptx.CommitAfter(cctx, final, args...)
	}
	endSpan(span, err)
	if err != nil {
		return s.commitFailed(ctx, tx, err)
	}
	return tx.changes, nil
}

// commitFailed finds out what happened to a transaction whose COMMIT
// failed. An error Postgres answered with means it did not commit. A lost
// connection or an expired deadline leaves the outcome open: the Store
// asks Postgres for the transaction's status on a fresh connection, so a
// change that did commit is published at once and reported as written.
func (s *Store) commitFailed(ctx context.Context, tx *Tx, err error) ([]Change, error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || tx.xid == "" {
		return nil, fmt.Errorf("commit: %w", translate(err))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	for range 5 {
		var status *string
		if qerr := s.pool.QueryRow(ctx, `SELECT pg_xact_status($1::xid8)`, tx.xid).Scan(&status); qerr != nil {
			break
		}
		switch {
		case status != nil && *status == "committed":
			s.log.Warn("commit reported an error but committed; publishing", "err", err)
			return tx.changes, nil
		case status != nil && *status == "aborted":
			return nil, fmt.Errorf("commit: %w: %w", ErrUnavailable, err)
		}
		// Still in progress (the server has not finished the commit yet).
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The relay publishes the change after its grace period if it did
	// commit.
	return nil, fmt.Errorf("commit: %w: %w", ErrOutcomeUnknown, err)
}

// errReplay marks an update answered from its idempotency record: the
// changes were published when they were first committed.
var errReplay = errors.New("idempotent replay")

// Tx is a write transaction handed to the function of Store.Update. It is
// not safe for concurrent use and is valid only during that function.
type Tx struct {
	tx      *txConn
	actor   string
	changes []Change
	xid     string // the transaction's id once it wrote a record
	// absent holds keys Get found missing: no row was locked, so another
	// transaction may create the record before this one writes it.
	absent map[string]bool
}

// Get reads the current version of key into msg and locks the record until
// the transaction ends. It returns ErrNotFound if the record does not exist
// or is deleted.
func (t *Tx) Get(ctx context.Context, key string, msg proto.Message) (Change, error) {
	c, err := scanChange(t.tx.QueryRow(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records WHERE key = $1 FOR UPDATE`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		if t.absent == nil {
			t.absent = make(map[string]bool)
		}
		t.absent[key] = true
	}
	if err != nil {
		return Change{}, fmt.Errorf("get %s: %w", key, translate(err))
	}
	if c.Deleted {
		return Change{}, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if msg != nil {
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(c.Payload, msg); err != nil {
			return Change{}, fmt.Errorf("decode %s: %w", key, err)
		}
	}
	return c, nil
}

// putSQL writes one record version and its change in one round trip. The
// record row is locked before the scope row, the same order Get-then-Put
// takes, so writers of one record never deadlock. A record never moves to
// another scope: the statement then returns nothing, and takes no seq from
// the target scope (a caller that handles the conflict and commits must not
// leave a hole in that scope's seqs).
const putSQL = `
WITH l AS (
	SELECT count(*) FILTER (WHERE x.scope <> $2) AS other
	FROM (SELECT scope FROM records WHERE key = $1 FOR UPDATE) x
), s AS (
	INSERT INTO scopes AS sc (scope, seq) SELECT $2, 1 FROM l WHERE l.other = 0
	ON CONFLICT (scope) DO UPDATE SET seq = sc.seq + 1
	RETURNING seq
), r AS (
	INSERT INTO records AS rec (key, scope, type_name, payload, version, seq, deleted, updated_at, updated_by)
	SELECT $1, $2, $3, $4, 1, s.seq, false, now(), $5 FROM s
	ON CONFLICT (key) DO UPDATE SET
		type_name = EXCLUDED.type_name, payload = EXCLUDED.payload,
		version = rec.version + 1, seq = EXCLUDED.seq, deleted = false,
		updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
	WHERE rec.scope = EXCLUDED.scope
	RETURNING key, scope, version, seq, updated_at
), c AS (
	INSERT INTO changes (scope, seq, key, version, deleted, type_name, payload, actor, at)
	SELECT r.scope, r.seq, r.key, r.version, false, $3, $4, $5, r.updated_at FROM r
)
SELECT version, seq, updated_at, pg_current_xact_id()::text FROM r`

// Put writes msg as the next version of key in scope and appends the change.
// It returns ErrConflict if key already belongs to another scope, and
// ErrRetry if Get found key missing in this transaction but another one has
// created it since (writing would silently overwrite a version this
// transaction never read; Update runs fn again).
func (t *Tx) Put(ctx context.Context, key, scope string, msg proto.Message) (Change, error) {
	payload, err := protojson.Marshal(msg)
	if err != nil {
		return Change{}, fmt.Errorf("encode %s: %w", key, err)
	}
	c := Change{
		Key:      key,
		Scope:    scope,
		TypeName: string(msg.ProtoReflect().Descriptor().FullName()),
		Payload:  payload,
		Message:  msg,
		Actor:    t.actor,
	}
	err = t.tx.QueryRow(ctx, putSQL, key, scope, c.TypeName, payload, t.actor).Scan(&c.Version, &c.Seq, &c.At, &t.xid)
	if errors.Is(err, pgx.ErrNoRows) {
		return Change{}, fmt.Errorf("put %s: %w: record belongs to another scope", key, ErrConflict)
	}
	if err != nil {
		return Change{}, fmt.Errorf("put %s: %w", key, translate(err))
	}
	if t.absent[key] {
		if c.Version != 1 {
			return Change{}, fmt.Errorf("put %s: created concurrently since read: %w", key, ErrRetry)
		}
		delete(t.absent, key)
	}
	t.changes = append(t.changes, c)
	return c, nil
}

// Delete turns key into a tombstone: its version grows and a delete change
// is appended. It returns ErrNotFound if the record does not exist or is
// already deleted.
func (t *Tx) Delete(ctx context.Context, key string) (Change, error) {
	cur, err := t.Get(ctx, key, nil)
	if err != nil {
		return Change{}, err
	}
	c := cur
	c.Deleted = true
	c.Actor = t.actor
	err = t.tx.QueryRow(ctx, `
		WITH s AS (
			UPDATE scopes SET seq = seq + 1 WHERE scope = $2 RETURNING seq
		), r AS (
			UPDATE records SET version = version + 1, seq = s.seq, deleted = true,
				updated_at = now(), updated_by = $3
			FROM s WHERE key = $1
			RETURNING key, scope, version, records.seq, updated_at, type_name, payload
		), c AS (
			INSERT INTO changes (scope, seq, key, version, deleted, type_name, payload, actor, at)
			SELECT r.scope, r.seq, r.key, r.version, true, r.type_name, r.payload, $3, r.updated_at FROM r
		)
		SELECT version, seq, updated_at, pg_current_xact_id()::text FROM r`, key, cur.Scope, t.actor).Scan(&c.Version, &c.Seq, &c.At, &t.xid)
	if err != nil {
		return Change{}, fmt.Errorf("delete %s: %w", key, translate(err))
	}
	t.changes = append(t.changes, c)
	return c, nil
}

// KeysMatching returns the keys of live (not deleted) records that start
// with prefix and end with suffix, sorted.
func (t *Tx) KeysMatching(ctx context.Context, prefix, suffix string) ([]string, error) {
	// Every match, however many: a caller removes or counts them all (a
	// removal that took only the first thousand memberships left the rest
	// readable). Keys only, so a large set stays small.
	rows, err := t.tx.Query(ctx, `
		SELECT key FROM records
		WHERE left(key, length($1)) = $1 AND right(key, length($2)) = $2
		  AND length(key) >= length($1) + length($2) AND NOT deleted
		ORDER BY key`, prefix, suffix)
	if err != nil {
		return nil, fmt.Errorf("keys %s…%s: %w", prefix, suffix, translate(err))
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("keys %s…%s: %w", prefix, suffix, translate(err))
	}
	return keys, nil
}

// Matching returns a page of the live records whose key starts with
// prefix and ends with suffix, sorted by key: the first limit with a key
// after after ("" for the first page), and whether more follow.
func (s *Store) Matching(ctx context.Context, prefix, suffix, after string, limit int) (recs []Change, more bool, err error) {
	rows, err := s.pool.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records
		WHERE left(key, length($1)) = $1 AND right(key, length($2)) = $2
		  AND length(key) >= length($1) + length($2) AND NOT deleted AND key > $3
		ORDER BY key LIMIT $4`, prefix, suffix, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("records %s…%s: %w", prefix, suffix, translate(err))
	}
	recs, err = pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, false, fmt.Errorf("records %s…%s: %w", prefix, suffix, translate(err))
	}
	if len(recs) > limit {
		return recs[:limit], true, nil
	}
	return recs, false, nil
}

// NewID returns a random record id: 16 lowercase base32 characters (80
// bits), safe in keys, scopes and NATS subjects.
func NewID() string {
	b := make([]byte, 10)
	if _, err := crand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// Records returns the current state of the given keys, tombstones included,
// in no particular order. Keys that never existed are absent.
func (s *Store) Records(ctx context.Context, keys []string) ([]Change, error) {
	return readRecords(ctx, s.pool, keys)
}

// Records returns the current state of the given keys as this transaction
// sees them, tombstones included, in no particular order, without locking
// them. Keys that never existed are absent. One query for every key.
func (t *Tx) Records(ctx context.Context, keys []string) ([]Change, error) {
	return readRecords(ctx, t.tx, keys)
}

// querier is what both the pool and a transaction offer for reads.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readRecords(ctx context.Context, q querier, keys []string) ([]Change, error) {
	rows, err := q.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records WHERE key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("read records: %w", translate(err))
	}
	out, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, fmt.Errorf("read records: %w", translate(err))
	}
	return out, nil
}

// ScopeOf returns the scope of an existing record, or ErrNotFound.
func (s *Store) ScopeOf(ctx context.Context, key string) (string, error) {
	var scope string
	if err := s.pool.QueryRow(ctx, `SELECT scope FROM records WHERE key = $1`, key).Scan(&scope); err != nil {
		return "", fmt.Errorf("scope of %s: %w", key, translate(err))
	}
	return scope, nil
}

func scanChange(row pgx.Row) (Change, error) {
	var c Change
	err := row.Scan(&c.Key, &c.Scope, &c.Version, &c.Seq, &c.Deleted, &c.TypeName, &c.Payload, &c.Actor, &c.At)
	return c, err
}

func scanChangeRow(row pgx.CollectableRow) (Change, error) { return scanChange(row) }
