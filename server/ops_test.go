package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/grpchealth"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
)

// scrape returns the value of the first sample of metric whose line
// contains every part (e.g. a label pair), or -1.
func scrape(t *testing.T, base, metric string, parts ...string) float64 {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + `(\{[^}]*\})? (\S+)$`)
lines:
	for _, m := range re.FindAllStringSubmatch(string(body), -1) {
		for _, p := range parts {
			if !strings.Contains(m[1], p) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("%s: %v", metric, err)
		}
		return v
	}
	return -1
}

func readyz(t *testing.T, base string) int {
	t.Helper()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// The ops listener reports what the instance does (RPCs, streams, the hub,
// the pool, the outbox, NATS) and its readiness follows NATS: not ready
// while NATS is down beyond the grace, with the stream services
// NOT_SERVING and the others serving; ready again after it returns.
func TestOpsMetricsAndHealth(t *testing.T) {
	t.Parallel()
	nats := testenv.StartNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	app := startApp(t, cfg)
	ops := httptest.NewServer(app.OpsHandler())
	t.Cleanup(ops.Close)

	alice := login(t, app.url, "alice")
	ev := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	ev.untilSynced(t)
	alice.setAvatar(t, "https://example.com/a.png")
	if r := ev.next(t, 10*time.Second).GetRecord(); r == nil {
		t.Fatal("no live event")
	}
	for _, c := range []struct {
		metric string
		parts  []string
		min    float64
	}{
		{"sluice_rpc_requests_total", []string{`code="ok"`, userv1connect.UserServiceSetAvatarUrlProcedure}, 1},
		{"sluice_rpc_duration_seconds_count", []string{userv1connect.UserServiceSetAvatarUrlProcedure}, 1},
		{"sluice_streams_open", nil, 1},
		{"sluice_stream_record_targets_open", nil, 1},
		{"sluice_stream_deliveries_total", nil, 1},
		{"sluice_hub_scopes", nil, 1},
		{"sluice_hub_received_total", nil, 1},
		{"sluice_publisher_published_total", nil, 1},
		{"sluice_pg_pool_conns_max", nil, 1},
		{"sluice_outbox_unpublished_changes", nil, 0},
		{"sluice_nats_connected", nil, 1},
		{"go_goroutines", nil, 1},
	} {
		if v := scrape(t, ops.URL, c.metric, c.parts...); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.metric, c.parts, v, c.min)
		}
	}
	if code := readyz(t, ops.URL); code != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200", code)
	}

	health := grpchealth.NewClient(h2c(), app.url)
	check := func(service string) grpchealth.Status {
		res, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health %s: %v", service, err)
		}
		return res.Status
	}
	nats.Stop()
	deadline := time.Now().Add(15 * time.Second)
	for readyz(t, ops.URL) != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz stayed 200 with NATS down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := check(syncv1connect.SyncServiceName); s != grpchealth.StatusNotServing {
		t.Errorf("SyncService with NATS down = %v, want not serving", s)
	}
	if s := check(userv1connect.UserServiceName); s != grpchealth.StatusServing {
		t.Errorf("UserService with NATS down = %v, want serving (it needs only Postgres)", s)
	}
	if v := scrape(t, ops.URL, "sluice_hub_degraded"); v != 1 {
		t.Errorf("sluice_hub_degraded = %v with NATS down, want 1", v)
	}
	nats.Start()
	deadline = time.Now().Add(15 * time.Second)
	for readyz(t, ops.URL) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz stayed 503 after NATS came back")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Shutting down: not ready at once (load balancers stop sending work
	// while streams end with unavailable).
	app.services.Shutdown()
	if code := readyz(t, ops.URL); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining = %d, want 503", code)
	}
}
