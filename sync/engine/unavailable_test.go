package engine

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestUpdateUnavailableWhenRefused: a Postgres that cannot be reached is
// ErrUnavailable (retryable), not an unexpected error.
func TestUpdateUnavailableWhenRefused(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := NewStore(pool, StoreConfig{})
	_, err = s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		_, err := tx.Put(ctx, "doc/1", "docs", user("1", "x"))
		return err
	})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Update = %v, want ErrUnavailable", err)
	}
}

// TestUpdateUnavailableWhenBackendTerminated: a connection Postgres closed
// (SQLSTATE 57P01, as in a restart) is ErrUnavailable; the next call works
// on a new connection.
func TestUpdateUnavailableWhenBackendTerminated(t *testing.T) {
	t.Parallel()
	shared := testPool(t)
	cfg := shared.Config().Copy()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := NewStore(pool, StoreConfig{})
	write := func() error {
		_, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
			_, err := tx.Put(ctx, "doc/1", "docs", user("1", "x"))
			return err
		})
		return err
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	var pid int32
	if err := pool.QueryRow(ctxT(t), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := shared.Exec(ctxT(t), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	if err := write(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write on a terminated connection = %v, want ErrUnavailable", err)
	}
	if err := write(); err != nil {
		t.Fatalf("write after the outage: %v", err)
	}
}

// TestCommitOutcomeRecovered: when the connection fails while COMMIT is in
// flight, the Store asks Postgres what happened. A transaction that did
// commit is reported as written and published at once; one that did not is
// ErrUnavailable with nothing written or published.
func TestCommitOutcomeRecovered(t *testing.T) {
	t.Parallel()
	for _, committed := range []bool{true, false} {
		name := "aborted"
		if committed {
			name = "committed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool := testPool(t)
			rec := &recorder{}
			s := NewStore(pool, StoreConfig{Notifier: rec})
			s.testHookCommit = func(ctx context.Context, tx *txConn) error {
				end := tx.Rollback
				if committed {
					end = tx.Commit
				}
				if err := end(ctx); err != nil {
					t.Errorf("end transaction: %v", err)
				}
				return io.ErrUnexpectedEOF // the answer never arrived
			}
			changes, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
				_, err := tx.Put(ctx, "doc/1", "docs", user("1", "x"))
				return err
			})
			rows := changeRows(t, pool, "docs")
			if committed {
				if err != nil || len(changes) != 1 {
					t.Fatalf("Update = %v, %v; want the committed change", changes, err)
				}
				if n := len(rec.notified()); n != 1 {
					t.Fatalf("%d notifications, want the committed change published at once", n)
				}
				if len(rows) != 1 {
					t.Fatalf("changes rows %v, want one", rows)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Update = %v, want ErrUnavailable", err)
			}
			if n := len(rec.notified()); n != 0 || len(rows) != 0 {
				t.Fatalf("%d notifications, rows %v; want nothing", n, rows)
			}
		})
	}
}
