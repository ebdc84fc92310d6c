package ops

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/testenv"
)

// sampledCollector adapts sampled to a prometheus.Collector.
type sampledCollector struct {
	s   *sampled
	err error
}

func (c *sampledCollector) Describe(ch chan<- *prometheus.Desc) { c.s.describe(ch) }
func (c *sampledCollector) Collect(ch chan<- prometheus.Metric) { c.err = c.s.collect(ch) }

// gaugesOf collects s once and returns its gauges by name.
func gaugesOf(t *testing.T, s *sampled) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := &sampledCollector{s: s}
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil || c.err != nil {
		t.Fatalf("gather: %v, %v", err, c.err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		out[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	return out
}

// Live sessions are those neither revoked, expired nor (with an idle
// expiry) unused too long; the answer is kept for the sampling interval.
func TestSampledSessionsLive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	for i, q := range []string{
		`now() + interval '1 hour', NULL, now()`,                      // live
		`now() + interval '1 hour', NULL, now() - interval '2 hours'`, // idle
		`now() + interval '1 hour', now(), now()`,                     // revoked
		`now() - interval '1 minute', NULL, now()`,                    // expired
	} {
		if _, err := pool.Exec(ctx, `INSERT INTO sessions (token_hash, user_id, expires_at, revoked_at, last_seen_at)
			VALUES ($1, 'u', `+q+`)`, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := gaugesOf(t, newSampled(pool, time.Minute, 0))["sluice_sessions_live"]; got != 2 {
		t.Errorf("without idle expiry: %v live, want 2 (the idle one counts)", got)
	}
	withIdle := newSampled(pool, time.Hour, time.Hour)
	if got := gaugesOf(t, withIdle)["sluice_sessions_live"]; got != 1 {
		t.Errorf("with a 1h idle expiry: %v live, want 1", got)
	}
	if _, err := pool.Exec(ctx, `UPDATE sessions SET revoked_at = now()`); err != nil {
		t.Fatal(err)
	}
	if got := gaugesOf(t, withIdle)["sluice_sessions_live"]; got != 1 {
		t.Errorf("within the sampling interval: %v live, want the last answer, 1", got)
	}
}
