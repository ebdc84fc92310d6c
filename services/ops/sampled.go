package ops

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// sampled are the gauges that cost a Postgres query over tables that grow
// with use (sessions, changes). They are read at most once per interval,
// when scraped, and the last answer is served in between, so scrapes from
// several Prometheus servers, or a short scrape interval, add no load.
type sampled struct {
	pool  *pgxpool.Pool
	every time.Duration
	idle  time.Duration // sessions unused this long are not live; 0: no idle expiry
	descs [3]*prometheus.Desc

	mu   sync.Mutex
	at   time.Time // when vals was read; zero before the first read
	vals [3]float64
	err  error // of the last read
}

func newSampled(pool *pgxpool.Pool, every, idle time.Duration) *sampled {
	if every <= 0 {
		every = 15 * time.Second
	}
	return &sampled{pool: pool, every: every, idle: max(idle, 0), descs: [3]*prometheus.Desc{
		prometheus.NewDesc("sluice_sessions_live", "Sessions neither revoked, expired nor idle, in the whole deployment (sampled).", nil, nil),
		prometheus.NewDesc("sluice_changes_rows", "Rows of the changes table (history and outbox), Postgres's estimate (sampled).", nil, nil),
		prometheus.NewDesc("sluice_changes_oldest_age_seconds", "Age of the oldest change still in the history: how far back a stream can resume (sampled).", nil, nil),
	}}
}

func (s *sampled) describe(ch chan<- *prometheus.Desc) {
	for _, d := range s.descs {
		ch <- d
	}
}

// collect sends the gauges, reading them first if the last read is older
// than the interval. It returns the error of the last read, whose gauges
// are then left out.
func (s *sampled) collect(ch chan<- prometheus.Metric) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() || time.Since(s.at) >= s.every {
		s.err = s.read()
		s.at = time.Now()
	}
	if s.err != nil {
		return s.err
	}
	for i, d := range s.descs {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, s.vals[i])
	}
	return nil
}

// read runs the queries. Each is bounded: the live sessions are one scan
// of sessions (one row per login until it expires), the row count is the
// statistics collector's estimate (kept current on every insert and
// delete, no scan), and the oldest change is the first entry of the
// changes_at index.
func (s *sampled) read() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var live, rows int64
	var age float64
	err := s.pool.QueryRow(ctx, `
		SELECT
			(SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > now()
				AND ($1::bigint = 0 OR last_seen_at > now() - make_interval(secs => $1::bigint / 1e6))),
			COALESCE((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'changes'::regclass), 0),
			COALESCE((SELECT EXTRACT(EPOCH FROM now() - min(at)) FROM changes), 0)::float8`, s.idle.Microseconds()).Scan(&live, &rows, &age)
	if err != nil {
		return fmt.Errorf("sessions and history: %w", err)
	}
	s.vals = [3]float64{float64(live), float64(max(rows, 0)), max(age, 0)}
	return nil
}
