package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HealthConfig says what the health of an instance depends on.
type HealthConfig struct {
	// Services are the served services' names; the ones in NeedNATS also
	// need NATS to be serving.
	Services []string
	NeedNATS []string
	// Postgres checks that Postgres answers (e.g. pool.Ping). Nil: not
	// checked. Its answer is reused for PostgresEvery (zero: 1s).
	Postgres      func(ctx context.Context) error
	PostgresEvery time.Duration
	// NATSDownSince returns the time NATS stopped answering, or the zero
	// time while it answers (the Hub's health check). Nil: not checked.
	NATSDownSince func() time.Time
	// NATSGrace is how long NATS may be down before the services that need
	// it report NOT_SERVING. Zero means 5s.
	NATSGrace time.Duration
}

// Health is the instance's grpchealth.Checker: a service is SERVING unless
// the instance is draining (shutting down), Postgres does not answer, or
// (for services that need it) NATS has been down longer than the grace.
// The empty service name is the whole instance. It is safe for concurrent
// use.
type Health struct {
	cfg      HealthConfig
	draining atomic.Bool

	mu    sync.Mutex
	pgAt  time.Time
	pgErr error
}

var _ grpchealth.Checker = (*Health)(nil)

// NewHealth returns a Health for cfg.
func NewHealth(cfg HealthConfig) *Health {
	if cfg.PostgresEvery <= 0 {
		cfg.PostgresEvery = time.Second
	}
	if cfg.NATSGrace <= 0 {
		cfg.NATSGrace = 5 * time.Second
	}
	return &Health{cfg: cfg}
}

// Drain makes every service NOT_SERVING from now on: the instance is
// shutting down and load balancers should stop sending it work.
func (h *Health) Drain() { h.draining.Store(true) }

// problem returns why service is not serving, or nil.
func (h *Health) problem(ctx context.Context, service string) error {
	if h.draining.Load() {
		return errors.New("draining: shutting down")
	}
	if err := h.postgres(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if h.cfg.NATSDownSince != nil && (service == "" || slices.Contains(h.cfg.NeedNATS, service)) {
		if since := h.cfg.NATSDownSince(); !since.IsZero() && time.Since(since) > h.cfg.NATSGrace {
			return fmt.Errorf("nats not answering since %s", since.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// postgres checks Postgres at most once per PostgresEvery.
func (h *Health) postgres(ctx context.Context) error {
	if h.cfg.Postgres == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.pgAt) < h.cfg.PostgresEvery {
		return h.pgErr
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	h.pgErr = h.cfg.Postgres(ctx)
	h.pgAt = time.Now()
	return h.pgErr
}

// Check implements grpchealth.Checker.
func (h *Health) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !slices.Contains(h.cfg.Services, req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %s", req.Service))
	}
	if h.problem(ctx, req.Service) != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// Handler serves the ops listener: /metrics (Prometheus), /healthz (the
// process is alive: always 200) and /readyz (200 when the whole instance is
// serving, else 503 with the reason). m or h may be nil.
func Handler(m *Metrics, h *Health) http.Handler {
	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if h != nil {
			if err := h.problem(r.Context(), ""); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
