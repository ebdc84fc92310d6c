package server

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
)

// logBuffer collects log output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// rpcLines returns the JSON request log lines of procedure.
func (b *logBuffer) rpcLines(t *testing.T, procedure string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(b.buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m["msg"] == "rpc" && m["procedure"] == procedure {
			out = append(out, m)
		}
	}
	return out
}

// startLogged starts an instance that logs JSON at debug level, as
// `sluiced serve -log-format json -log-level debug` does.
func startLogged(t *testing.T, cfg Config) (*testApp, *logBuffer) {
	t.Helper()
	out := &logBuffer{}
	log, err := NewLogger("debug", "json", out)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = log
	return startApp(t, cfg), out
}

// Every request log line carries the procedure, the principal, the Connect
// code, the duration and the trace id: the call's own when it is traced,
// else the one the caller sent in traceparent.
func TestRequestLogLine(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	cfg := baseConfig(t)
	cfg.TracerProvider = tp
	traced, out := startLogged(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const proc = userv1connect.UserServiceSetAvatarUrlProcedure

	alice := login(t, traced.url, "alice")
	alice.setAvatar(t, "https://example.com/logged.png")
	_, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "not a url"}))
	if codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad url: %v", err)
	}
	anonymous := newClient(traced.url)
	if _, err := anonymous.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/x.png"})); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous: %v", err)
	}

	lines := out.rpcLines(t, proc)
	if len(lines) != 3 {
		t.Fatalf("%d request lines for %s, want 3: %v", len(lines), proc, lines)
	}
	traces := map[string]bool{}
	for _, s := range exporter.GetSpans() {
		if s.Name == proc[1:] {
			traces[s.SpanContext.TraceID().String()] = true
		}
	}
	for i, want := range []struct{ principal, code string }{{"alice", "ok"}, {"alice", "invalid_argument"}, {"", "unauthenticated"}} {
		l := lines[i]
		if l["principal"] != want.principal || l["code"] != want.code {
			t.Errorf("line %d: principal %v, code %v; want %q, %q", i, l["principal"], l["code"], want.principal, want.code)
		}
		if d, ok := l["duration"].(float64); !ok || d <= 0 {
			t.Errorf("line %d: duration %v", i, l["duration"])
		}
		if id, _ := l["traceId"].(string); !traces[id] {
			t.Errorf("line %d: traceId %q is not the trace of one of the calls %v", i, id, traces)
		}
		if l["level"] != "DEBUG" {
			t.Errorf("line %d: level %v", i, l["level"])
		}
	}

	// Untraced: the caller's trace id.
	plain, plainOut := startLogged(t, baseConfig(t))
	bob := login(t, plain.url, "bob")
	req := connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/b.png"})
	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req.Header().Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	if _, err := bob.user.SetAvatarUrl(ctx, req); err != nil {
		t.Fatal(err)
	}
	lines = plainOut.rpcLines(t, proc)
	if len(lines) != 1 || lines[0]["traceId"] != callerTrace || lines[0]["principal"] != "bob" {
		t.Fatalf("untraced call's lines %v, want one for bob with traceId %s", lines, callerTrace)
	}
}
