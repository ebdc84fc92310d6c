package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The profiler answers on its own listener only, never on the API port.
func TestDebugListener(t *testing.T) {
	t.Parallel()
	stop, addr, err := ServeDebug("127.0.0.1:0", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	res, err := http.Get("http://" + addr.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("profiler: %d %.100q", res.StatusCode, body)
	}

	app := startApp(t, baseConfig(t))
	res, err = http.Get(app.url + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "goroutine profile") {
		t.Fatal("the API port serves the profiler")
	}
}
