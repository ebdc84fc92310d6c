package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
)

// RelayConfig configures a Relay. The zero value is valid.
type RelayConfig struct {
	// Prefix is the NATS subject prefix; empty means DefaultPrefix.
	Prefix string
	// Interval is the time between two relay passes. Zero means 1s.
	Interval time.Duration
	// Grace is how old an unpublished change must be before the relay
	// republishes it, leaving the normal post-commit path time to
	// acknowledge it. Zero means 2s.
	Grace time.Duration
	// Batch bounds the changes republished per pass. Zero means 500.
	Batch int
	// Retention is how long changes are kept as history. Zero means 7 days.
	Retention time.Duration
	// KeepPerScope bounds the changes kept per scope. Zero means 10000.
	KeepPerScope int64
	// PruneEvery is the time between two pruning passes. Zero means 1m.
	PruneEvery time.Duration
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Relay republishes committed changes that were never acknowledged by NATS
// (a crash or a NATS outage between commit and publish), and prunes history
// beyond the retention bounds. Several instances may run relays at once:
// rows are claimed with SKIP LOCKED and duplicates are dropped by version
// downstream. Run runs it.
type Relay struct {
	nc   *nats.Conn
	pool *pgxpool.Pool
	subj subjects
	cfg  RelayConfig
	log  *slog.Logger

	counters relayCounters
	outage   Outage
}

// NewRelay returns a Relay; Run runs its passes, or RunOnce and Prune
// drive it directly.
func NewRelay(nc *nats.Conn, pool *pgxpool.Pool, cfg RelayConfig) *Relay {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 2 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.KeepPerScope <= 0 {
		cfg.KeepPerScope = 10000
	}
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{nc: nc, pool: pool, subj: newSubjects(cfg.Prefix), cfg: cfg, log: cfg.Logger}
}

// Run runs relay and pruning passes until ctx ends (a pass in flight is
// canceled with it). It returns nil.
func (r *Relay) Run(ctx context.Context) error {
	relay := time.NewTicker(r.cfg.Interval)
	defer relay.Stop()
	prune := time.NewTicker(r.cfg.PruneEvery)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-relay.C:
			for {
				n, err := r.RunOnce(ctx, r.cfg.Grace)
				if err != nil {
					if ctx.Err() == nil {
						r.counters.failures.Add(1)
						r.outage.Fail(r.log, "relay pass", err)
					}
					break
				}
				r.outage.OK(r.log, "relay pass")
				if n < r.cfg.Batch {
					break
				}
			}
		case <-prune.C:
			n, err := r.Prune(ctx)
			if err != nil && ctx.Err() == nil {
				r.counters.failures.Add(1)
				r.outage.Fail(r.log, "prune history", err)
			}
			r.counters.pruned.Add(uint64(max(n, 0)))
		}
	}
}

// RunOnce republishes up to Batch unpublished changes older than grace and
// marks them published once NATS acknowledged them. It returns how many it
// republished.
func (r *Relay) RunOnce(ctx context.Context, grace time.Duration) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("relay begin: %w", translate(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	rows, err := tx.Query(ctx, `
		SELECT key, scope, version, seq, deleted, type_name, payload, actor, at
		FROM changes
		WHERE NOT published AND at < now() - $1::interval
		ORDER BY at, scope, seq
		LIMIT $2
		FOR UPDATE SKIP LOCKED`, grace, r.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("relay select: %w", translate(err))
	}
	changes, err := pgx.CollectRows(rows, scanChangeRow)
	if err != nil {
		return 0, fmt.Errorf("relay select: %w", translate(err))
	}
	if len(changes) == 0 {
		return 0, nil
	}
	ids := make([]changeID, 0, len(changes))
	for i := range changes {
		c := &changes[i]
		data, err := encodeChange(c)
		if err != nil {
			// A payload that cannot be decoded would block the relay
			// forever; log it and mark it so the pass moves on.
			r.log.Error("relay encode; change skipped", "scope", c.Scope, "seq", c.Seq, "err", err)
		} else if err := r.nc.Publish(r.subj.change(c.Scope), data); err != nil {
			return 0, fmt.Errorf("relay publish: %w", err)
		}
		ids = append(ids, changeID{scope: c.Scope, seq: c.Seq})
	}
	if err := flush(ctx, r.nc, 5*time.Second); err != nil {
		return 0, fmt.Errorf("relay flush: %w", err)
	}
	scopes := make([]string, len(ids))
	seqs := make([]int64, len(ids))
	for i, id := range ids {
		scopes[i], seqs[i] = id.scope, id.seq
	}
	if _, err := tx.Exec(ctx, `
		UPDATE changes c SET published = true
		FROM unnest($1::text[], $2::bigint[]) AS u(scope, seq)
		WHERE c.scope = u.scope AND c.seq = u.seq`, scopes, seqs); err != nil {
		return 0, fmt.Errorf("relay mark: %w", translate(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("relay commit: %w", translate(err))
	}
	r.log.Info("relay republished changes", "count", len(changes))
	r.counters.republished.Add(uint64(len(changes)))
	return len(changes), nil
}

// Prune deletes published history older than Retention or beyond
// KeepPerScope changes per scope, and moves each scope's horizon past what
// it deleted, so a cursor from before the horizon gets a reset and a fresh
// snapshot. Unpublished changes are never pruned. It returns how many
// changes it deleted.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	return prune(ctx, r.pool, r.cfg.Retention, r.cfg.KeepPerScope)
}

func prune(ctx context.Context, pool *pgxpool.Pool, retention time.Duration, keep int64) (int64, error) {
	// Idempotency keys are honoured for a day.
	if _, err := pool.Exec(ctx, `DELETE FROM idempotency WHERE created_at < now() - interval '24 hours'`); err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", translate(err))
	}
	var n int64
	err := pool.QueryRow(ctx, `
		WITH d AS (
			DELETE FROM changes c USING scopes s
			WHERE c.scope = s.scope AND c.published
			  AND (c.at < now() - $1::interval OR c.seq <= s.seq - $2)
			RETURNING c.scope, c.seq
		), m AS (
			SELECT scope, max(seq) AS seq, count(*) AS n FROM d GROUP BY scope
		), u AS (
			UPDATE scopes s SET horizon = GREATEST(s.horizon, m.seq) FROM m WHERE s.scope = m.scope
		)
		SELECT COALESCE(sum(n), 0)::bigint FROM m`, retention, keep).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", translate(err))
	}
	return n, nil
}
