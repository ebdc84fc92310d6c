package engine

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

// testPool returns a pool on a fresh, migrated database of its own.
func testPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.MaxConns = 6 // the test server is shared with other packages
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// testNATS starts an embedded NATS server of its own and connects to it.
func testNATS(t *testing.T) (*testenv.NATS, *nats.Conn) {
	t.Helper()
	return testNATSB(t)
}

// testNATSB is testNATS for tests and benchmarks.
func testNATSB(t testing.TB) (*testenv.NATS, *nats.Conn) {
	t.Helper()
	srv := testenv.StartNATS(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return srv, nc
}

// ctxT returns a context that ends with the test or after wait.
func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

func user(id, name string) *userv1.User { return &userv1.User{Id: id, DisplayName: name} }

// put writes one record version in its own transaction.
func put(t *testing.T, s *Store, key, scope, name string) Change {
	t.Helper()
	changes, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		_, err := tx.Put(ctx, key, scope, user(key, name))
		return err
	})
	if err != nil {
		t.Fatalf("put %s in %s: %v", key, scope, err)
	}
	if len(changes) != 1 {
		t.Fatalf("put %s: %d changes, want 1", key, len(changes))
	}
	return changes[0]
}

// del deletes one record in its own transaction.
func del(t *testing.T, s *Store, key string) Change {
	t.Helper()
	changes, err := s.Update(ctxT(t), "tester", func(ctx context.Context, tx *Tx) error {
		_, err := tx.Delete(ctx, key)
		return err
	})
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	return changes[0]
}

// changeRow is a row of the changes table.
type changeRow struct {
	Seq       int64
	Key       string
	Version   int64
	Deleted   bool
	Published bool
}

func (r changeRow) String() string {
	return fmt.Sprintf("{seq %d %s v%d del=%v pub=%v}", r.Seq, r.Key, r.Version, r.Deleted, r.Published)
}

// changeRows returns the changes of scope in seq order.
func changeRows(t *testing.T, pool *pgxpool.Pool, scope string) []changeRow {
	t.Helper()
	rows, err := pool.Query(ctxT(t), `
		SELECT seq, key, version, deleted, published FROM changes WHERE scope = $1 ORDER BY seq`, scope)
	if err != nil {
		t.Fatalf("read changes: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[changeRow])
	if err != nil {
		t.Fatalf("read changes: %v", err)
	}
	return out
}

func seqsOf(rows []changeRow) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.Seq
	}
	return out
}

// scopeRow returns a scope's seq and horizon; ok is false if it has no row.
func scopeRow(t *testing.T, pool *pgxpool.Pool, scope string) (seq, horizon int64, ok bool) {
	t.Helper()
	err := pool.QueryRow(ctxT(t), `SELECT seq, horizon FROM scopes WHERE scope = $1`, scope).Scan(&seq, &horizon)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, false
	}
	if err != nil {
		t.Fatalf("read scope %s: %v", scope, err)
	}
	return seq, horizon, true
}

// span returns [from, from+1, …, to].
func span(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runner is a background component: Hub, Publisher, Relay, Worker,
// Presence.
type runner interface {
	Run(ctx context.Context) error
}

// runT runs r until the test ends, then stops it and waits for it.
func runT(t testing.TB, r runner) {
	t.Helper()
	stop := startRun(r)
	t.Cleanup(stop)
}

// startRun runs r in the background; the returned func stops it and waits.
func startRun(r runner) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
