package sync

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
