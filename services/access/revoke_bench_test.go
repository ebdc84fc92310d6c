package access

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/authz"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/sync/engine"
)

// revokeEnv is the engine with a fact-based read rule: scope room/<id> is
// readable by user u while the record grant/<id>.<u> exists.
type revokeEnv struct {
	store    *engine.Store
	streamer *engine.Streamer
	loader   *Loader
	reads    *authz.ReadRules
}

func newRevokeEnv(b testing.TB) *revokeEnv {
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	ns := testenv.StartNATS(b)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	prefix := testenv.Prefix()
	pub := engine.NewPublisher(nc, pool, engine.PublisherConfig{Prefix: prefix})
	runB(b, pub)
	store := engine.NewStore(pool, engine.StoreConfig{Notifier: pub})
	hub := engine.NewHub(nc, store, engine.HubConfig{Prefix: prefix})
	runB(b, hub)
	reads, err := authz.NewReadRules(authz.ReadRule{Type: "room", Description: "holders of a grant",
		Check: func(ctx context.Context, p *authz.Principal, id string, f authz.Facts) error {
			found, err := f.Get(ctx, "grant/"+id+"."+p.ID, &colorv1.Permissions{})
			if err != nil {
				return err
			}
			if !found {
				return authz.Hide("room-grant", "no grant")
			}
			return nil
		}})
	if err != nil {
		b.Fatal(err)
	}
	return &revokeEnv{
		store:    store,
		streamer: engine.NewStreamer(store, hub, engine.StreamerConfig{Heartbeat: time.Hour}),
		loader:   NewLoader(store, NewScopes("grant")),
		reads:    reads,
	}
}

func (e *revokeEnv) write(b testing.TB, fn func(ctx context.Context, tx *engine.Tx) error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.store.Update(ctx, "bench", fn); err != nil {
		b.Fatal(err)
	}
}

// grant gives users the grant of room in one transaction.
func (e *revokeEnv) grant(b testing.TB, room string, users []string) {
	for chunk := range slices.Chunk(users, 500) {
		e.write(b, func(ctx context.Context, tx *engine.Tx) error {
			for _, u := range chunk {
				key := "grant/" + room + "." + u
				if _, err := tx.Put(ctx, key, key, &colorv1.Permissions{UserId: u}); err != nil {
					return err
				}
			}
			return nil
		})
	}
}

// open starts one stream per user on room/<room> and returns, per user, a
// channel that receives the time its revoked event was sent.
func (e *revokeEnv) open(b testing.TB, room string, users []string) map[string]chan time.Time {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	revoked := make(map[string]chan time.Time, len(users))
	synced := make(chan struct{}, len(users))
	for _, u := range users {
		ch := make(chan time.Time, 1)
		revoked[u] = ch
		uctx := authz.WithPrincipal(ctx, &authz.Principal{ID: u})
		scope := "room/" + room
		deps, guard, err := e.loader.ReadGuard(uctx, e.reads, scope)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			_ = e.streamer.Stream(uctx, engine.Targets{Scopes: []engine.ScopeTarget{{Scope: scope, Deps: deps, Guard: guard}}},
				engine.SinkFunc(func(ev *syncv1.SubscribeResponse) error {
					switch {
					case ev.GetSynced() != nil:
						synced <- struct{}{}
					case ev.GetRevoked() != nil:
						ch <- time.Now()
					}
					return nil
				}))
		}()
	}
	for range users {
		select {
		case <-synced:
		case <-time.After(2 * time.Minute):
			b.Fatal("streams did not sync")
		}
	}
	return revoked
}

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "u" + strconv.Itoa(i)
	}
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func report(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
}

// BenchmarkRevokeOne: n streams are open, each readable through its own
// grant; each iteration deletes one grant and measures commit → revoked
// on that stream while the others stay open.
//
//	go test -run XXX -bench RevokeOne -benchtime 50x ./services/access/
func BenchmarkRevokeOne(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			e := newRevokeEnv(b)
			us := users(n)
			e.grant(b, "r", us)
			revoked := e.open(b, "r", us)
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				u := us[i%n]
				var committed time.Time
				e.write(b, func(ctx context.Context, tx *engine.Tx) error {
					_, err := tx.Delete(ctx, "grant/r."+u)
					return err
				})
				committed = time.Now()
				select {
				case at := <-revoked[u]:
					lat = append(lat, at.Sub(committed))
				case <-time.After(time.Minute):
					b.Fatalf("stream of %s not revoked", u)
				}
				if i+1 >= n {
					break
				}
			}
			report(b, lat)
		})
	}
}

// BenchmarkRevokeAll: n streams of n users depend on records that one
// transaction deletes; measures commit → revoked on every stream.
//
//	go test -run XXX -bench RevokeAll -benchtime 1x ./services/access/
func BenchmarkRevokeAll(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("streams=%d", n), func(b *testing.B) {
			e := newRevokeEnv(b)
			var lat []time.Duration
			for i := 0; i < b.N; i++ {
				room := "all" + strconv.Itoa(i)
				us := users(n)
				e.grant(b, room, us)
				revoked := e.open(b, room, us)
				b.StartTimer()
				e.write(b, func(ctx context.Context, tx *engine.Tx) error {
					for _, u := range us {
						if _, err := tx.Delete(ctx, "grant/"+room+"."+u); err != nil {
							return err
						}
					}
					return nil
				})
				committed := time.Now()
				for _, u := range us {
					select {
					case at := <-revoked[u]:
						lat = append(lat, at.Sub(committed))
					case <-time.After(2 * time.Minute):
						b.Fatalf("stream of %s not revoked", u)
					}
				}
				b.StopTimer()
			}
			report(b, lat)
		})
	}
}

// runB runs r until the benchmark ends.
func runB(b testing.TB, r interface{ Run(context.Context) error }) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	b.Cleanup(func() {
		cancel()
		<-done
	})
}
