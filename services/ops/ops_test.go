package ops

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/emptypb"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func status(t *testing.T, h *Health, service string) grpchealth.Status {
	t.Helper()
	res, err := h.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
	if err != nil {
		t.Fatalf("Check(%q): %v", service, err)
	}
	return res.Status
}

// An unreachable Postgres (a real pool on a closed port) makes every
// service NOT_SERVING and /readyz 503; /healthz stays 200.
func TestHealthPostgresUnreachable(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	h := NewHealth(HealthConfig{Services: []string{"a.v1.A"}, Postgres: pool.Ping})
	if s := status(t, h, "a.v1.A"); s != grpchealth.StatusNotServing {
		t.Fatalf("status = %v, want not serving", s)
	}
	srv := httptest.NewServer(Handler(nil, h))
	t.Cleanup(srv.Close)
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "postgres") {
		t.Fatalf("/readyz = %d %q, want 503 naming postgres", code, body)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", code)
	}
}

// NATS down beyond the grace: the services that need it, and the instance,
// are NOT_SERVING; the others serve. Draining stops everything; an unknown
// service is not_found.
func TestHealthNATSAndDraining(t *testing.T) {
	t.Parallel()
	var down time.Time
	h := NewHealth(HealthConfig{
		Services:      []string{"a.v1.Stream", "a.v1.Write"},
		NeedNATS:      []string{"a.v1.Stream"},
		Postgres:      func(context.Context) error { return nil },
		NATSDownSince: func() time.Time { return down },
		NATSGrace:     time.Second,
	})
	for _, svc := range []string{"", "a.v1.Stream", "a.v1.Write"} {
		if s := status(t, h, svc); s != grpchealth.StatusServing {
			t.Fatalf("%q = %v, want serving", svc, s)
		}
	}
	down = time.Now() // within the grace
	if s := status(t, h, "a.v1.Stream"); s != grpchealth.StatusServing {
		t.Fatalf("within the grace: %v, want serving", s)
	}
	down = time.Now().Add(-2 * time.Second)
	for svc, want := range map[string]grpchealth.Status{"": grpchealth.StatusNotServing, "a.v1.Stream": grpchealth.StatusNotServing, "a.v1.Write": grpchealth.StatusServing} {
		if s := status(t, h, svc); s != want {
			t.Errorf("NATS down: %q = %v, want %v", svc, s, want)
		}
	}
	down = time.Time{}
	h.Drain()
	if s := status(t, h, "a.v1.Write"); s != grpchealth.StatusNotServing {
		t.Fatalf("draining: %v, want not serving", s)
	}
	_, err := h.Check(context.Background(), &grpchealth.CheckRequest{Service: "nope.v1.Nope"})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("unknown service: %v, want not_found", err)
	}
}

// The interceptor counts calls by procedure and code, times them, and
// labels unknown procedures "other".
func TestMetricsInterceptor(t *testing.T) {
	t.Parallel()
	const proc = "/a.v1.A/Call"
	m := NewMetrics([]string{proc})
	fail := errors.New("boom")
	mux := http.NewServeMux()
	calls := 0
	handler := func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
		calls++
		if calls == 2 {
			return nil, connect.NewError(connect.CodePermissionDenied, fail)
		}
		return connect.NewResponse(&emptypb.Empty{}), nil
	}
	opts := connect.WithInterceptors(m.Interceptor())
	mux.Handle(proc, connect.NewUnaryHandler(proc, handler, opts))
	mux.Handle("/a.v1.A/Hidden", connect.NewUnaryHandler("/a.v1.A/Hidden", handler, opts))
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)
	for _, p := range []string{proc, proc, proc, "/a.v1.A/Hidden"} {
		c := connect.NewClient[emptypb.Empty, emptypb.Empty](http.DefaultClient, api.URL+p)
		_, _ = c.CallUnary(context.Background(), connect.NewRequest(&emptypb.Empty{}))
	}
	srv := httptest.NewServer(Handler(m, nil))
	t.Cleanup(srv.Close)
	_, body := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`sluice_rpc_requests_total{code="ok",procedure="/a.v1.A/Call"} 2`,
		`sluice_rpc_requests_total{code="permission_denied",procedure="/a.v1.A/Call"} 1`,
		`sluice_rpc_requests_total{code="ok",procedure="other"} 1`,
		`sluice_rpc_duration_seconds_count{procedure="/a.v1.A/Call"} 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
