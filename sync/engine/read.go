package engine

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// reader reads a consistent view: every method sees the same snapshot.
type reader struct {
	tx pgx.Tx
}

// view runs fn in a read-only repeatable-read transaction, so that a scope's
// seq and the rows read with it belong to one snapshot.
func (s *Store) view(ctx context.Context, fn func(r *reader) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin read: %w", translate(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	if err := fn(&reader{tx: tx}); err != nil {
		return err
	}
	return nil
}

// scopeState returns a scope's current seq and its history horizon; a scope
// that was never written has both at 0.
func (r *reader) scopeState(ctx context.Context, scope string) (seq, horizon int64, err error) {
	err = r.tx.QueryRow(ctx, `SELECT seq, horizon FROM scopes WHERE scope = $1`, scope).Scan(&seq, &horizon)
	if err == pgx.ErrNoRows {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("scope %s: %w", scope, translate(err))
	}
	return seq, horizon, nil
}

// records returns the current state of keys.
func (r *reader) records(ctx context.Context, keys []string) ([]Change, error) {
	return readRecords(ctx, r.tx, keys)
}

// scopeRecords returns the records of scope whose latest change is after
// afterSeq, in seq order; tombstones only when withDeleted.
func (r *reader) scopeRecords(ctx context.Context, scope string, afterSeq int64, withDeleted bool) ([]Change, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records WHERE scope = $1 AND seq > $2 AND ($3 OR NOT deleted)
		ORDER BY seq`, scope, afterSeq, withDeleted)
	if err != nil {
		return nil, fmt.Errorf("read scope %s: %w", scope, translate(err))
	}
	out, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, fmt.Errorf("read scope %s: %w", scope, translate(err))
	}
	return out, nil
}

// recordChanges returns the changes of key after version after, in version
// order, at most limit.
func (r *reader) recordChanges(ctx context.Context, key string, after int64, limit int) ([]Change, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, actor, at
		FROM changes WHERE key = $1 AND version > $2
		ORDER BY version LIMIT $3`, key, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes of %s: %w", key, translate(err))
	}
	out, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, fmt.Errorf("read changes of %s: %w", key, translate(err))
	}
	return out, nil
}

// changes returns the changes of scope with afterSeq < seq < beforeSeq in seq
// order (beforeSeq 0 means no upper bound).
func (r *reader) changes(ctx context.Context, scope string, afterSeq, beforeSeq int64) ([]Change, error) {
	rows, err := r.tx.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, actor, at
		FROM changes WHERE scope = $1 AND seq > $2 AND ($3 = 0 OR seq < $3)
		ORDER BY seq`, scope, afterSeq, beforeSeq)
	if err != nil {
		return nil, fmt.Errorf("read changes %s: %w", scope, translate(err))
	}
	out, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, fmt.Errorf("read changes %s: %w", scope, translate(err))
	}
	return out, nil
}

// scopeSeq returns the current seq of scope; 0 for a scope never written.
func (s *Store) scopeSeq(ctx context.Context, scope string) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `SELECT seq FROM scopes WHERE scope = $1`, scope).Scan(&seq)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("scope %s: %w", scope, translate(err))
	}
	return seq, nil
}

// scopeSeqs returns the current seq of each of scopes that was ever
// written.
func (s *Store) scopeSeqs(ctx context.Context, scopes []string) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT scope, seq FROM scopes WHERE scope = ANY($1)`, scopes)
	if err != nil {
		return nil, fmt.Errorf("scope seqs: %w", translate(err))
	}
	out := make(map[string]int64, len(scopes))
	var scope string
	var seq int64
	_, err = pgx.ForEachRow(rows, []any{&scope, &seq}, func() error {
		out[scope] = seq
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scope seqs: %w", translate(err))
	}
	return out, nil
}

// missingChanges is what a Hub reads to fill a gap in a scope's feed.
type missingChanges struct {
	changes   []Change // in seq order
	seq       int64    // the scope's seq in the same snapshot
	pruned    bool     // some of the changes asked for are behind the horizon
	truncated bool     // more than the limit asked for: changes is incomplete
}

// missing reads the changes of scope with after < seq <= upto (upto 0: no
// upper bound), at most limit of them, from one snapshot.
func (s *Store) missing(ctx context.Context, scope string, after, upto int64, limit int) (missingChanges, error) {
	var out missingChanges
	err := s.view(ctx, func(r *reader) error {
		seq, horizon, err := r.scopeState(ctx, scope)
		if err != nil {
			return err
		}
		out.seq = seq
		if after >= seq {
			return nil
		}
		if after < horizon {
			out.pruned = true
			return nil
		}
		rows, err := r.tx.Query(ctx, `
			SELECT key, scope, version, seq, deleted, type_name, payload, actor, at
			FROM changes WHERE scope = $1 AND seq > $2 AND ($3 = 0 OR seq <= $3)
			ORDER BY seq LIMIT $4`, scope, after, upto, limit+1)
		if err != nil {
			return fmt.Errorf("read changes %s: %w", scope, translate(err))
		}
		out.changes, err = pgx.CollectRows(rows, scanChangeRow)
		if err != nil {
			return fmt.Errorf("read changes %s: %w", scope, translate(err))
		}
		if len(out.changes) > limit {
			out.changes, out.truncated = out.changes[:limit], true
		}
		return nil
	})
	return out, err
}

// countLive counts the live records of scope with seq at most seq, up to
// limit (it stops counting there).
func (s *Store) countLive(ctx context.Context, scope string, seq int64, limit int) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FROM (
			SELECT 1 FROM records WHERE scope = $1 AND seq <= $2 AND NOT deleted LIMIT $3
		) x`, scope, seq, limit).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count scope %s: %w", scope, translate(err))
	}
	return n, nil
}

// snapshotPage returns up to limit live records of scope with
// after < seq <= upto, in seq order.
func (s *Store) snapshotPage(ctx context.Context, scope string, upto, after int64, limit int) ([]Change, error) {
	return s.collect(ctx, "read scope "+scope, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records WHERE scope = $1 AND seq <= $2 AND seq > $3 AND NOT deleted
		ORDER BY seq LIMIT $4`, scope, upto, after, limit)
}

// window returns the limit live records of scope with the newest seqs at
// most upto, in seq order.
func (s *Store) window(ctx context.Context, scope string, upto int64, limit int) ([]Change, error) {
	recs, err := s.collect(ctx, "read window of "+scope, `
		SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
		FROM records WHERE scope = $1 AND seq <= $2 AND NOT deleted
		ORDER BY seq DESC LIMIT $3`, scope, upto, limit)
	slices.Reverse(recs)
	return recs, err
}

// ListQuery names one page of a scope's records for Store.List.
type ListQuery struct {
	// Scope is the scope to read, e.g. "channel/7".
	Scope string
	// KeyPrefix, when set, keeps only the records whose key starts with it:
	// a typed list such as the messages ("message/7/") of a channel scope.
	KeyPrefix string
	// BeforeSeq keeps the records whose latest seq is below it; 0 means
	// from the newest.
	BeforeSeq int64
	// Limit is the page size; at least 1.
	Limit int
}

// ListPage is one page of a scope's records, newest first.
type ListPage struct {
	// Records are live records (no tombstones), newest seq first.
	Records []Change
	// NextBeforeSeq is the BeforeSeq of the next (older) page; 0 when this
	// page is the last.
	NextBeforeSeq int64
	// ScopeSeq is the scope's seq when the page was read: a stream resumed
	// after it continues exactly after this read.
	ScopeSeq int64
}

// List returns one page of q.Scope's live records, newest first, and the
// scope's seq, read from one snapshot. It is the one paging of the engine:
// SyncService.List and every typed list built on it (ListMessages) read
// through it. Read access must have been checked by the caller.
func (s *Store) List(ctx context.Context, q ListQuery) (ListPage, error) {
	if q.Limit < 1 {
		return ListPage{}, fmt.Errorf("list %s: limit %d is below 1", q.Scope, q.Limit)
	}
	var page ListPage
	err := s.view(ctx, func(r *reader) error {
		var err error
		if page.ScopeSeq, _, err = r.scopeState(ctx, q.Scope); err != nil {
			return err
		}
		// One more than the page says whether there is a page before it.
		rows, err := r.tx.Query(ctx, `
			SELECT key, scope, version, seq, deleted, type_name, payload, updated_by, updated_at
			FROM records
			WHERE scope = $1 AND ($2 = 0 OR seq < $2) AND NOT deleted AND left(key, length($3)) = $3
			ORDER BY seq DESC LIMIT $4`, q.Scope, q.BeforeSeq, q.KeyPrefix, q.Limit+1)
		if err != nil {
			return fmt.Errorf("list %s: %w", q.Scope, translate(err))
		}
		page.Records, err = pgx.CollectRows(rows, scanChangeRow)
		if err != nil {
			return fmt.Errorf("list %s: %w", q.Scope, translate(err))
		}
		return nil
	})
	if err != nil {
		return ListPage{}, err
	}
	if len(page.Records) > q.Limit {
		page.Records = page.Records[:q.Limit]
		page.NextBeforeSeq = page.Records[q.Limit-1].Seq
	}
	return page, nil
}

// collect runs a query of records and collects its rows.
func (s *Store) collect(ctx context.Context, what, sql string, args ...any) ([]Change, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, translate(err))
	}
	out, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, translate(err))
	}
	return out, nil
}
