package ops

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/sync/engine"
)

// Sources are the parts of a running instance the engine collector reads.
// Nil parts are left out.
type Sources struct {
	Hub       *engine.Hub
	Streamer  *engine.Streamer
	Publisher *engine.Publisher
	Relay     *engine.Relay
	Pool      *pgxpool.Pool
	NATS      *nats.Conn
	Logger    *slog.Logger
	// SampleEvery is how often the gauges that query growing tables
	// (sessions, changes) are read; scrapes in between get the last
	// answer. Zero means 15s.
	SampleEvery time.Duration
	// SessionIdle is the sessions' idle expiry (auth.SessionsConfig.Idle):
	// sessions unused for longer are not counted live. Zero: none.
	SessionIdle time.Duration
}

// metric is one metric of the engine collector and how to read it.
type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func(s *snapshot) float64
}

// snapshot is what one scrape read, once, for every metric.
type snapshot struct {
	hub  engine.HubStats
	str  engine.StreamStats
	pub  engine.PublisherStats
	rel  engine.RelayStats
	pool *pgxpool.Stat
	nats nats.Statistics
	up   bool
}

// engineCollector is a prometheus.Collector over the instance's counters; reading
// them costs no work on the hot paths (they are atomics), and the outbox
// and job queries run only when scraped.
type engineCollector struct {
	src     Sources
	metrics []metric
	outbox  [2]*prometheus.Desc
	jobs    [2]*prometheus.Desc
	sampled *sampled
	latency *prometheus.Desc // the hub's time to last delivery
	scrape  *prometheus.Desc
}

// NewEngineCollector returns the collector of the engine's metrics; register
// it with Metrics.Registry().
func NewEngineCollector(src Sources) prometheus.Collector {
	if src.Logger == nil {
		src.Logger = slog.New(slog.DiscardHandler)
	}
	e := &engineCollector{src: src}
	add := func(name, help string, kind prometheus.ValueType, read func(s *snapshot) float64) {
		e.metrics = append(e.metrics, metric{desc: prometheus.NewDesc(name, help, nil, nil), kind: kind, read: read})
	}
	c, g := prometheus.CounterValue, prometheus.GaugeValue
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if src.Streamer != nil {
		add("sluice_streams_open", "Record streams open on this instance.", g, func(s *snapshot) float64 { return float64(s.str.Open) })
		add("sluice_stream_record_targets_open", "Record targets of the open streams.", g, func(s *snapshot) float64 { return float64(s.str.OpenRecords) })
		add("sluice_stream_scope_targets_open", "Scope targets of the open streams.", g, func(s *snapshot) float64 { return float64(s.str.OpenScopes) })
		add("sluice_stream_deliveries_total", "Live changes sent to streams.", c, func(s *snapshot) float64 { return float64(s.str.Delivered) })
		add("sluice_stream_coalesced_events_total", "Events sent marked coalesced (versions skipped).", c, func(s *snapshot) float64 { return float64(s.str.Coalesced) })
		add("sluice_stream_overflows_total", "Re-reads of current state after a stream's buffer overflowed.", c, func(s *snapshot) float64 { return float64(s.str.Overflows) })
		add("sluice_stream_revocations_total", "Targets revoked while streaming.", c, func(s *snapshot) float64 { return float64(s.str.Revocations) })
		add("sluice_stream_heartbeats_total", "Heartbeats sent.", c, func(s *snapshot) float64 { return float64(s.str.Heartbeats) })
		add("sluice_stream_events_from_postgres_total", "Record events sent from Postgres reads (catch-ups, gap fills, re-reads).", c, func(s *snapshot) float64 { return float64(s.str.FromPostgres) })
	}
	if src.Hub != nil {
		add("sluice_hub_scopes", "Scopes this instance holds a NATS subscription for.", g, func(s *snapshot) float64 { return float64(s.hub.Scopes) })
		add("sluice_hub_received_total", "Changes received from NATS.", c, func(s *snapshot) float64 { return float64(s.hub.Received) })
		add("sluice_hub_early_total", "Changes that arrived ahead of a lower seq and were held back.", c, func(s *snapshot) float64 { return float64(s.hub.Early) })
		add("sluice_hub_duplicates_total", "Changes dropped as already handed out.", c, func(s *snapshot) float64 { return float64(s.hub.Duplicates) })
		add("sluice_hub_fills_total", "Reads of missing changes from Postgres.", c, func(s *snapshot) float64 { return float64(s.hub.Fills) })
		add("sluice_hub_filled_total", "Changes handed out from those reads.", c, func(s *snapshot) float64 { return float64(s.hub.Filled) })
		add("sluice_hub_fill_failures_total", "Reads of missing changes that failed (retried).", c, func(s *snapshot) float64 { return float64(s.hub.FillFailures) })
		add("sluice_hub_resets_total", "Scopes whose streams were told to re-read current state.", c, func(s *snapshot) float64 { return float64(s.hub.Resets) })
		add("sluice_hub_degraded", "1 while NATS does not answer and scopes are followed from Postgres.", g, func(s *snapshot) float64 { return b(s.hub.Degraded) })
		e.latency = prometheus.NewDesc("sluice_fanout_last_delivery_seconds",
			"Per change handed out on this instance, the time from its commit to its write to the last stream here that got it.", nil, nil)
	}
	if src.Publisher != nil {
		add("sluice_publisher_published_total", "Committed changes handed to NATS.", c, func(s *snapshot) float64 { return float64(s.pub.Published) })
		add("sluice_publisher_failures_total", "Committed changes that could not be published (the relay sends them).", c, func(s *snapshot) float64 { return float64(s.pub.Failed) })
		add("sluice_publisher_marked_total", "Changes marked published after a NATS round trip.", c, func(s *snapshot) float64 { return float64(s.pub.Marked) })
		add("sluice_publisher_mark_failures_total", "Batches whose mark failed (the relay sends them again).", c, func(s *snapshot) float64 { return float64(s.pub.MarkFailures) })
	}
	if src.Relay != nil {
		add("sluice_relay_republished_total", "Changes published again after their grace period.", c, func(s *snapshot) float64 { return float64(s.rel.Republished) })
		add("sluice_relay_pruned_total", "History rows pruned.", c, func(s *snapshot) float64 { return float64(s.rel.Pruned) })
		add("sluice_relay_failures_total", "Relay and prune passes that failed.", c, func(s *snapshot) float64 { return float64(s.rel.Failures) })
	}
	if src.Pool != nil {
		add("sluice_pg_pool_conns_acquired", "Postgres connections in use.", g, func(s *snapshot) float64 { return float64(s.pool.AcquiredConns()) })
		add("sluice_pg_pool_conns_idle", "Idle Postgres connections.", g, func(s *snapshot) float64 { return float64(s.pool.IdleConns()) })
		add("sluice_pg_pool_conns_max", "The pool's connection limit.", g, func(s *snapshot) float64 { return float64(s.pool.MaxConns()) })
		add("sluice_pg_pool_acquires_total", "Connections acquired from the pool.", c, func(s *snapshot) float64 { return float64(s.pool.AcquireCount()) })
		add("sluice_pg_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", c, func(s *snapshot) float64 { return s.pool.AcquireDuration().Seconds() })
		add("sluice_pg_pool_empty_acquires_total", "Acquires that had to wait for a connection.", c, func(s *snapshot) float64 { return float64(s.pool.EmptyAcquireCount()) })
		add("sluice_pg_pool_canceled_acquires_total", "Acquires canceled before a connection was free.", c, func(s *snapshot) float64 { return float64(s.pool.CanceledAcquireCount()) })
		e.outbox = [2]*prometheus.Desc{
			prometheus.NewDesc("sluice_outbox_unpublished_changes", "Committed changes not yet marked published.", nil, nil),
			prometheus.NewDesc("sluice_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished change (0 when none).", nil, nil),
		}
		e.jobs = [2]*prometheus.Desc{
			prometheus.NewDesc("sluice_jobs", "Jobs by kind and state (queued, running, retrying, dead).", []string{"kind", "state"}, nil),
			prometheus.NewDesc("sluice_jobs_oldest_due_age_seconds", "Age of the oldest job that is due and not finished, by kind.", []string{"kind"}, nil),
		}
		e.sampled = newSampled(src.Pool, src.SampleEvery, src.SessionIdle)
	}
	if src.NATS != nil {
		add("sluice_nats_connected", "1 while the NATS connection is up.", g, func(s *snapshot) float64 { return b(s.up) })
		add("sluice_nats_reconnects_total", "NATS reconnects.", c, func(s *snapshot) float64 { return float64(s.nats.Reconnects) })
		add("sluice_nats_in_messages_total", "Messages received from NATS.", c, func(s *snapshot) float64 { return float64(s.nats.InMsgs) })
		add("sluice_nats_out_messages_total", "Messages sent to NATS.", c, func(s *snapshot) float64 { return float64(s.nats.OutMsgs) })
	}
	e.scrape = prometheus.NewDesc("sluice_scrape_query_failed", "1 when a query of this scrape failed (outbox, jobs, sessions, history).", nil, nil)
	return e
}

// Describe implements prometheus.Collector.
func (e *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range e.metrics {
		ch <- m.desc
	}
	if e.latency != nil {
		ch <- e.latency
	}
	if e.src.Pool != nil {
		ch <- e.outbox[0]
		ch <- e.outbox[1]
		ch <- e.jobs[0]
		ch <- e.jobs[1]
		e.sampled.describe(ch)
	}
	ch <- e.scrape
}

// Collect implements prometheus.Collector.
func (e *engineCollector) Collect(ch chan<- prometheus.Metric) {
	var s snapshot
	if e.src.Hub != nil {
		s.hub = e.src.Hub.Stats()
	}
	if e.src.Streamer != nil {
		s.str = e.src.Streamer.Stats()
	}
	if e.src.Publisher != nil {
		s.pub = e.src.Publisher.Stats()
	}
	if e.src.Relay != nil {
		s.rel = e.src.Relay.Stats()
	}
	if e.src.Pool != nil {
		s.pool = e.src.Pool.Stat()
	}
	if e.src.NATS != nil {
		s.nats = e.src.NATS.Stats()
		s.up = e.src.NATS.IsConnected()
	}
	for _, m := range e.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.read(&s))
	}
	if e.latency != nil {
		h := s.hub.LastDelivery
		ch <- prometheus.MustNewConstHistogram(e.latency, h.Count, h.Sum, h.Buckets)
	}
	failed := 0.0
	if e.src.Pool != nil {
		if err := e.collectQueries(ch); err != nil {
			e.src.Logger.Warn("metrics query", "err", err)
			failed = 1
		}
		if err := e.sampled.collect(ch); err != nil {
			e.src.Logger.Warn("metrics query", "err", err)
			failed = 1
		}
	}
	ch <- prometheus.MustNewConstMetric(e.scrape, prometheus.GaugeValue, failed)
}

// collectQueries reads the outbox backlog and the job queue from Postgres.
func (e *engineCollector) collectQueries(ch chan<- prometheus.Metric) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	var age float64
	if err := e.src.Pool.QueryRow(ctx, `
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(at)), 0)::float8
		FROM changes WHERE NOT published`).Scan(&n, &age); err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(e.outbox[0], prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(e.outbox[1], prometheus.GaugeValue, age)
	rows, err := e.src.Pool.Query(ctx, `
		SELECT kind,
			count(*) FILTER (WHERE done_at IS NULL AND (locked_until IS NULL OR locked_until < now())),
			count(*) FILTER (WHERE done_at IS NULL AND locked_until >= now()),
			count(*) FILTER (WHERE done_at IS NULL AND last_error IS NOT NULL),
			count(*) FILTER (WHERE done_at IS NOT NULL AND last_error IS NOT NULL),
			COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE done_at IS NULL AND run_at <= now())), 0)::float8
		FROM jobs GROUP BY kind`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var queued, running, retrying, dead int64
		if err := rows.Scan(&kind, &queued, &running, &retrying, &dead, &age); err != nil {
			return err
		}
		for state, v := range map[string]int64{"queued": queued, "running": running, "retrying": retrying, "dead": dead} {
			ch <- prometheus.MustNewConstMetric(e.jobs[0], prometheus.GaugeValue, float64(v), kind, state)
		}
		ch <- prometheus.MustNewConstMetric(e.jobs[1], prometheus.GaugeValue, age, kind)
	}
	return rows.Err()
}
