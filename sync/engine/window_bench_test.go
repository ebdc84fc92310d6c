package engine

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// benchScope fills scope with n live records in one statement (the Store's
// write path would take minutes for 100k).
func benchScope(b *testing.B, pool *pgxpool.Pool, scope string, n int) {
	b.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO scopes (scope, seq) VALUES ($1, $2)`, scope, n); err != nil {
		b.Fatal(err)
	}
	_, err := pool.Exec(context.Background(), `
		INSERT INTO records (key, scope, type_name, payload, version, seq, deleted, updated_at, updated_by)
		SELECT 'msg/' || i, $1, 'sluice.user.v1.User', jsonb_build_object('id', i::text, 'displayName', 'message ' || i), 1, i, false, now(), 'bench'
		FROM generate_series(1, $2) i;
		`, scope, n)
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSubscribeLargeScope subscribes to a scope of 100,000 records,
// with a window of 50 and (for contrast) without one: time to synced,
// rows read and allocations per subscribe.
func BenchmarkSubscribeLargeScope(b *testing.B) {
	pool := testPool(b)
	_, nc := testNATSB(b)
	const scope, n = "channel/big", 100_000
	benchScope(b, pool, scope, n)
	store := NewStore(pool, StoreConfig{})
	hub := NewHub(nc, store, HubConfig{Prefix: testenv.Prefix()})
	runT(b, hub)
	for _, bc := range []struct {
		name  string
		limit int
	}{{"window50", 50}, {"whole", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			streamer := NewStreamer(store, hub, StreamerConfig{MaxSnapshot: n})
			before := streamer.Stats().RowsRead
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithCancel(context.Background())
				errSynced := context.Canceled
				err := streamer.Stream(ctx, Targets{Scopes: []ScopeTarget{{Scope: scope, Limit: bc.limit}}}, SinkFunc(func(ev *syncv1.SubscribeResponse) error {
					if ev.GetSynced() != nil {
						cancel()
					}
					return nil
				}))
				cancel()
				if err != errSynced {
					b.Fatalf("stream: %v", err)
				}
			}
			b.ReportMetric(float64(streamer.Stats().RowsRead-before)/float64(b.N), "rows/op")
		})
	}
}
