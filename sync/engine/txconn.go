package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txConn is the connection of one write transaction. It saves round trips
// to Postgres: BEGIN is not sent on its own but in one pipeline with the
// transaction's first statement, a last statement can travel with COMMIT
// the same way, and a transaction that runs no statement costs none.
//
// A write that reads a permission and puts a record is then three round
// trips (BEGIN+read, put, COMMIT) instead of four. Atomicity is
// unchanged: BEGIN runs first, and a failed statement in a pipeline makes
// Postgres skip what follows it (an aborted transaction never commits).
type txConn struct {
	conn *pgxpool.Conn
	tx   pgx.Tx // nil until the first statement
	done bool   // committed or rolled back
}

// begin sends BEGIN and the first statement in one round trip and returns
// the batch, positioned at the statement's result. The caller closes it.
func (c *txConn) begin(ctx context.Context, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	b.Queue(sql, args...)
	br := c.conn.SendBatch(ctx, b)
	c.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, err
	}
	return br, nil
}

// Exec runs a statement in the transaction.
func (c *txConn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if c.tx != nil {
		return c.tx.Exec(ctx, sql, args...)
	}
	br, err := c.begin(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// QueryRow runs a query in the transaction; its Row reports errors at Scan.
func (c *txConn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if c.tx != nil {
		return c.tx.QueryRow(ctx, sql, args...)
	}
	br, err := c.begin(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{row: br.QueryRow(), br: br}
}

// Query runs a query in the transaction. The rows must be closed before
// the next statement.
func (c *txConn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if c.tx != nil {
		return c.tx.Query(ctx, sql, args...)
	}
	br, err := c.begin(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// Commit commits the transaction. It returns an error that matches
// pgx.ErrTxCommitRollback when Postgres rolled it back instead.
func (c *txConn) Commit(ctx context.Context) error {
	return c.CommitAfter(ctx, "")
}

// CommitAfter runs the statement sql (if not empty) and COMMIT in one
// round trip. If the statement fails, Postgres skips the COMMIT and the
// transaction is rolled back.
func (c *txConn) CommitAfter(ctx context.Context, sql string, args ...any) error {
	if c.done {
		return pgx.ErrTxClosed
	}
	if c.tx == nil && sql == "" {
		c.done = true // nothing was sent: nothing to commit
		return nil
	}
	if sql == "" {
		c.done = true
		return c.tx.Commit(ctx)
	}
	b := &pgx.Batch{}
	if c.tx == nil {
		b.BeginTx(pgx.TxOptions{})
	}
	b.Queue(sql, args...)
	b.Queue("COMMIT")
	var br pgx.BatchResults
	if c.tx == nil {
		br = c.conn.SendBatch(ctx, b)
		c.tx = br.Tx()
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
	} else {
		br = c.tx.SendBatch(ctx, b)
	}
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	c.done = true
	if tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

// Rollback rolls the transaction back if it is still open. A connection
// left in a transaction by a failed rollback is closed by the pool on
// release, never reused.
func (c *txConn) Rollback(ctx context.Context) error {
	if c.done {
		return nil
	}
	c.done = true
	if c.tx == nil {
		return nil
	}
	if err := c.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// release rolls back what is still open and returns the connection to the
// pool.
func (c *txConn) release(ctx context.Context) {
	if c.conn == nil {
		return
	}
	c.Rollback(ctx) //nolint:errcheck // the pool drops a connection left in a transaction
	c.conn.Release()
	c.conn = nil
}

// batchRow is the Row of a statement sent with BEGIN: Scan reads it and
// then ends the batch.
type batchRow struct {
	row pgx.Row
	br  pgx.BatchResults
}

func (r batchRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// batchRows are the Rows of a query sent with BEGIN: Close ends the batch.
type batchRows struct {
	pgx.Rows
	br  pgx.BatchResults
	err error
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if err := r.br.Close(); err != nil && r.err == nil {
		r.err = err
	}
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
