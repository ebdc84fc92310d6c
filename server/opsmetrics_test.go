package server

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// opsScraper scrapes an instance's ops listener with the Prometheus text
// parser and waits for metrics to move.
type opsScraper struct {
	t    *testing.T
	base string
}

func newOpsScraper(t *testing.T, app *testApp) *opsScraper {
	ops := httptest.NewServer(app.OpsHandler())
	t.Cleanup(ops.Close)
	return &opsScraper{t: t, base: ops.URL}
}

func (s *opsScraper) value(name string) float64 {
	s.t.Helper()
	fams := families(s.t, s.base)
	if fams[name] == nil {
		s.t.Fatalf("/metrics lacks %s", name)
	}
	return value(fams, name, nil)
}

// until waits (15 s at most) for cond to hold of the metric's value.
func (s *opsScraper) until(name, what string, cond func(float64) bool) float64 {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := value(families(s.t, s.base), name, nil)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s = %v: %s did not happen", name, v, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Live sessions and the session cache move with logins, calls and logouts.
func TestMetricsSessions(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.MetricsSampleEvery = 50 * time.Millisecond
	app := startApp(t, cfg)
	ops := newOpsScraper(t, app)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	live := ops.value("sluice_sessions_live")
	alice := login(t, app.url, "alice")
	login(t, app.url, "bob")
	live = ops.until("sluice_sessions_live", "two logins", func(v float64) bool { return v == live+2 })

	hits, misses := ops.value("sluice_session_cache_hits_total"), ops.value("sluice_session_cache_misses_total")
	alice.setAvatar(t, "https://example.com/1.png") // first use here: Postgres
	if v := ops.value("sluice_session_cache_misses_total"); v != misses+1 {
		t.Errorf("misses after a first call = %v, want %v", v, misses+1)
	}
	alice.setAvatar(t, "https://example.com/2.png") // within the cache TTL
	if v := ops.value("sluice_session_cache_hits_total"); v < hits+1 {
		t.Errorf("hits after a second call = %v, want at least %v", v, hits+1)
	}

	if _, err := alice.auth.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{})); err != nil {
		t.Fatal(err)
	}
	ops.until("sluice_sessions_live", "a logout", func(v float64) bool { return v == live-1 })
}

// The history gauges: the changes table's rows grow with writes (the
// statistics collector's estimate, current within about a second), and
// the age of the oldest change grows with time.
func TestMetricsHistory(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.MetricsSampleEvery = 50 * time.Millisecond
	app := startApp(t, cfg)
	ops := newOpsScraper(t, app)

	rows := ops.value("sluice_changes_rows")
	alice := login(t, app.url, "alice")
	for i := range 3 {
		alice.setAvatar(t, "https://example.com/"+string(rune('a'+i))+".png")
	}
	ops.until("sluice_changes_rows", "three writes", func(v float64) bool { return v >= rows+3 })
	age := ops.until("sluice_changes_oldest_age_seconds", "a first change", func(v float64) bool { return v > 0 })
	ops.until("sluice_changes_oldest_age_seconds", "time passing", func(v float64) bool { return v >= age+0.2 })
	if v := ops.value("sluice_scrape_query_failed"); v != 0 {
		t.Errorf("sluice_scrape_query_failed = %v", v)
	}
}

// Every change handed out is timed from its commit to its write to the
// last stream of the instance that got it.
func TestMetricsTimeToLastDelivery(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ops := newOpsScraper(t, app)
	const name = "sluice_fanout_last_delivery_seconds"
	before := ops.value(name) // the number of observations

	alice := login(t, app.url, "alice")
	var streams []*events
	for range 3 {
		ev := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
		ev.untilSynced(t)
		streams = append(streams, ev)
	}
	alice.setAvatar(t, "https://example.com/timed.png")
	for _, ev := range streams {
		ev.next(t, 10*time.Second)
	}
	// One change, three streams: one observation, once all three wrote it.
	ops.until(name, "the delivery", func(v float64) bool { return v == before+1 })
	fams := families(t, ops.base)
	h := fams[name].GetMetric()[0].GetHistogram()
	if h.GetSampleSum() <= 0 || h.GetSampleSum() > 10 {
		t.Errorf("time to last delivery sums to %vs, want a positive time under 10s", h.GetSampleSum())
	}
}
