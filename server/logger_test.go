package server

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// -log-format json writes JSON lines, and a line logged for a traced call
// carries its trace id.
func TestLogFormatAndTraceIDs(t *testing.T) {
	var b strings.Builder
	log, err := NewLogger("info", "json", &b)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	log.InfoContext(ctx, "hello", "procedure", "/a.v1.A/B")
	line := b.String()
	if !strings.HasPrefix(line, "{") || !strings.Contains(line, `"traceId":"0af7651916cd43dd8448eb211c80319c"`) || !strings.Contains(line, `"procedure":"/a.v1.A/B"`) {
		t.Fatalf("log line %q", line)
	}
	if _, err := NewLogger("info", "xml", &b); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
