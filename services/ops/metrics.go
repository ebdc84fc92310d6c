// Package ops is the operations surface of a Sluice server: Prometheus
// metrics (an RPC interceptor, and a collector over the engine's counters,
// the Postgres pool, NATS, the outbox and the jobs), health (a
// grpchealth.Checker that follows draining, NATS and Postgres), and the
// handler of the ops listener (/metrics, /healthz, /readyz).
//
// Metric names follow Prometheus conventions: the sluice_ prefix, base
// units, _total counters, and bounded label sets (procedure, code, kind,
// state; never a user id or record key).
package ops

import (
	"context"
	"errors"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the server's Prometheus registry and its RPC metrics. It is
// safe for concurrent use.
type Metrics struct {
	reg        *prometheus.Registry
	procedures []string // sorted; other procedures are labelled "other"
	requests   *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	streams    *prometheus.CounterVec
}

// NewMetrics returns a registry with the Go runtime and process collectors
// and the RPC metrics of procedures (the label set is bounded to them).
func NewMetrics(procedures []string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg:        reg,
		procedures: slices.Sorted(slices.Values(procedures)),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rpc_requests_total",
			Help: "Unary RPCs handled, by procedure and Connect code (ok for success).",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_rpc_duration_seconds",
			Help:    "Time to handle a unary RPC, by procedure.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"procedure"}),
		streams: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_rpc_streams_total",
			Help: "Server streams ended, by procedure and Connect code (ok when the client left).",
		}, []string{"procedure", "code"}),
	}
	reg.MustRegister(m.requests, m.duration, m.streams)
	return m
}

// Registry returns the registry to register more collectors with and to
// serve.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// label bounds the procedure label to the known procedures.
func (m *Metrics) label(procedure string) string {
	if _, ok := slices.BinarySearch(m.procedures, procedure); ok {
		return procedure
	}
	return "other"
}

// codeOf is the code label of an RPC's outcome.
func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, context.Canceled) {
		return connect.CodeCanceled.String()
	}
	return connect.CodeOf(err).String()
}

// Interceptor returns the connect interceptor that counts and times every
// call. Install it outside the error interceptor, so it sees the codes
// clients see.
func (m *Metrics) Interceptor() connect.Interceptor { return interceptor{m} }

type interceptor struct{ m *Metrics }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		if req.Spec().IsClient {
			return res, err
		}
		proc := i.m.label(req.Spec().Procedure)
		i.m.duration.WithLabelValues(proc).Observe(time.Since(start).Seconds())
		i.m.requests.WithLabelValues(proc, codeOf(err)).Inc()
		return res, err
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		err := next(ctx, conn)
		i.m.streams.WithLabelValues(i.m.label(conn.Spec().Procedure), codeOf(err)).Inc()
		return err
	}
}

// WatchSessionCache exports the session cache's counters read by stats
// (hits: bearer tokens resolved from the instance's cache; misses: read
// from Postgres) as sluice_session_cache_hits_total and
// sluice_session_cache_misses_total. Call it once.
func (m *Metrics) WatchSessionCache(stats func() (hits, misses uint64)) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_session_cache_hits_total",
			Help: "Bearer session tokens resolved from this instance's session cache.",
		}, func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sluice_session_cache_misses_total",
			Help: "Bearer session tokens looked up in Postgres (not cached here, or cached too long ago).",
		}, func() float64 { _, n := stats(); return float64(n) }),
	)
}
