package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/internal/testenv"
)

// txConnRig returns a pool with an empty table t(id int primary key) and
// a function that counts its rows.
func txConnRig(t *testing.T) (*pgxpool.Pool, func() int) {
	t.Helper()
	pool := testPool(t)
	if _, err := pool.Exec(ctxT(t), `CREATE TABLE t (id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return pool, func() int {
		var n int
		if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM t`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

func newTxConn(t *testing.T, pool *pgxpool.Pool) *txConn {
	t.Helper()
	conn, err := pool.Acquire(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	c := &txConn{conn: conn}
	t.Cleanup(func() { c.release(context.Background()) })
	return c
}

// TestTxConnBeginsWithFirstStatement: the first statement, sent in one
// round trip with BEGIN, is inside the transaction — a rollback undoes it,
// whichever kind of call sent it.
func TestTxConnBeginsWithFirstStatement(t *testing.T) {
	t.Parallel()
	pool, count := txConnRig(t)
	ctx := ctxT(t)
	first := map[string]func(c *txConn) error{
		"Exec": func(c *txConn) error {
			_, err := c.Exec(ctx, `INSERT INTO t VALUES (1)`)
			return err
		},
		"QueryRow": func(c *txConn) error {
			var id int
			return c.QueryRow(ctx, `INSERT INTO t VALUES (1) RETURNING id`).Scan(&id)
		},
		"Query": func(c *txConn) error {
			rows, err := c.Query(ctx, `INSERT INTO t VALUES (1), (2) RETURNING id`)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err == nil && len(ids) != 2 {
				t.Errorf("Query returned %v, want two ids", ids)
			}
			return err
		},
	}
	for name, run := range first {
		c := newTxConn(t, pool)
		if err := run(c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The connection is usable for the next statement.
		if _, err := c.Exec(ctx, `INSERT INTO t VALUES (3)`); err != nil {
			t.Fatalf("%s: second statement: %v", name, err)
		}
		if err := c.Rollback(ctx); err != nil {
			t.Fatalf("%s: rollback: %v", name, err)
		}
		if n := count(); n != 0 {
			t.Fatalf("%s: %d rows after rollback, want 0", name, n)
		}
	}
}

// TestTxConnCommitAfter: the last statement and COMMIT share a round trip;
// when the statement fails, nothing of the transaction is committed.
func TestTxConnCommitAfter(t *testing.T) {
	t.Parallel()
	pool, count := txConnRig(t)
	ctx := ctxT(t)

	c := newTxConn(t, pool)
	if _, err := c.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitAfter(ctx, `INSERT INTO t VALUES ($1)`, 1); err == nil {
		t.Fatal("CommitAfter with a failing statement: no error")
	}
	if err := c.Rollback(ctx); err != nil {
		t.Fatalf("rollback after a failed commit: %v", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d rows after a failed CommitAfter, want 0", n)
	}

	c = newTxConn(t, pool)
	if _, err := c.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitAfter(ctx, `INSERT INTO t VALUES ($1)`, 2); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows after CommitAfter, want 2", n)
	}

	// A transaction whose only statement goes with COMMIT.
	c = newTxConn(t, pool)
	if err := c.CommitAfter(ctx, `INSERT INTO t VALUES ($1)`, 3); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
}

// TestTxConnFailedFirstStatement: a first statement that fails leaves an
// aborted transaction that commits nothing, and the connection goes back
// to the pool usable.
func TestTxConnFailedFirstStatement(t *testing.T) {
	t.Parallel()
	pool, count := txConnRig(t)
	ctx := ctxT(t)
	c := newTxConn(t, pool)
	var id int
	if err := c.QueryRow(ctx, `SELECT id FROM no_such_table`).Scan(&id); err == nil {
		t.Fatal("query of a missing table: no error")
	}
	if _, err := c.Exec(ctx, `INSERT INTO t VALUES (1)`); err == nil {
		t.Fatal("statement in an aborted transaction: no error")
	}
	if err := c.Commit(ctx); err == nil {
		t.Fatal("commit of an aborted transaction: no error")
	}
	c.release(ctx)
	if n := count(); n != 0 {
		t.Fatalf("%d rows, want 0", n)
	}
	// Every pooled connection still works.
	for range 4 {
		if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreUpdateWithoutStatements: an Update whose function writes
// nothing succeeds with no changes (and sends no BEGIN or COMMIT).
func TestStoreUpdateWithoutStatements(t *testing.T) {
	t.Parallel()
	s := NewStore(testPool(t), StoreConfig{})
	changes, err := s.Update(ctxT(t), "tester", func(context.Context, *Tx) error { return nil })
	if err != nil || len(changes) != 0 {
		t.Fatalf("Update = %v, %v; want no changes, no error", changes, err)
	}
}

// roundTrips counts what a pool sends to Postgres: every query and every
// batch is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestUpdateRoundTrips pins the cost of a write in round trips to
// Postgres, the part of a write's latency that does not shrink with a
// faster server: a read-then-put write is three (BEGIN with the read, the
// put, COMMIT), four with an idempotency key (the claim goes with BEGIN,
// the record with COMMIT), and a function that writes nothing costs none.
func TestUpdateRoundTrips(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := NewStore(pool, StoreConfig{})
	readPut := func(ctx context.Context, tx *Tx) error {
		u := user("u", "")
		if _, err := tx.Get(ctx, "user/u", u); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		_, err := tx.Put(ctx, "user/u", "user/u", u)
		return err
	}
	cases := []struct {
		name string
		ctx  context.Context
		fn   func(context.Context, *Tx) error
		want int64
	}{
		{"read then put", ctxT(t), readPut, 3},
		{"read then put, idempotent", WithIdempotency(ctxT(t), Idempotency{Principal: "u", Key: "k1", Procedure: "/p", RequestHash: []byte{1}}), readPut, 4},
		{"nothing", ctxT(t), func(context.Context, *Tx) error { return nil }, 0},
	}
	// Warm up: prepared statements are described once per connection.
	for range 3 {
		if _, err := s.Update(ctxT(t), "u", readPut); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(WithIdempotency(ctxT(t), Idempotency{Principal: "u", Key: NewID(), Procedure: "/p", RequestHash: []byte{1}}), "u", readPut); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		before := rt.n.Load()
		if _, err := s.Update(c.ctx, "u", c.fn); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := rt.n.Load() - before; got != c.want {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.want)
		}
	}
}
