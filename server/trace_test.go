package server

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

// One SetAvatarUrl, written on one instance and streamed from two: a single
// trace holds the RPC's server span, its validation and authorization, the
// update with its queries and commit, the publication, and one fan-out
// span per instance, each a child of and linked to the publication, saying
// how many streams it reached, how many got it coalesced, and the time
// from the commit to the write to the last of them.
func TestTraceFromWriteToEveryInstance(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	nats := testenv.StartNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	cfg.TracerProvider = tp
	one := startApp(t, cfg)
	two := startApp(t, cfg)

	alice := login(t, one.url, "alice")
	aliceTwo := login(t, two.url, "alice")
	onOne := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	onOne.untilSynced(t)
	onTwo := aliceTwo.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	onTwo.untilSynced(t)
	written := alice.setAvatar(t, "https://example.com/traced.png")
	for _, ev := range []*events{onOne, onTwo} {
		if r := ev.next(t, 10*time.Second).GetRecord().GetRecord(); r.GetVersion() != written.GetVersion() {
			t.Fatalf("delivered %v, want version %d", r, written.GetVersion())
		}
	}

	byName := func(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range spans {
			if s.Name == name {
				out = append(out, s)
			}
		}
		return out
	}
	var rpc, update, commit, publish tracetest.SpanStub
	var fanouts []tracetest.SpanStub
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := exporter.GetSpans()
		for _, s := range byName(spans, "sluice.user.v1.UserService/SetAvatarUrl") {
			if s.SpanKind == trace.SpanKindServer {
				rpc = s
			}
		}
		for _, s := range byName(spans, "sluice.update") {
			if s.Parent.SpanID() == rpc.SpanContext.SpanID() {
				update = s
			}
		}
		for _, s := range byName(spans, "sluice.commit") {
			if s.Parent.SpanID() == update.SpanContext.SpanID() {
				commit = s
			}
		}
		for _, s := range byName(spans, "sluice.publish") {
			if s.Parent.SpanID() == update.SpanContext.SpanID() {
				publish = s
			}
		}
		fanouts = fanouts[:0]
		for _, s := range byName(spans, "sluice.fanout") {
			if publish.SpanContext.IsValid() && s.Parent.SpanID() == publish.SpanContext.SpanID() {
				fanouts = append(fanouts, s)
			}
		}
		if rpc.SpanContext.IsValid() && update.SpanContext.IsValid() && commit.SpanContext.IsValid() && len(fanouts) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spans: rpc %v, update %v, commit %v, publish %v, fan-outs %d (of %d spans)",
				rpc.SpanContext.IsValid(), update.SpanContext.IsValid(), commit.SpanContext.IsValid(), publish.SpanContext.IsValid(), len(fanouts), len(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Validation is a span of its own under the RPC, before the update;
	// the authorization decision one under the update (its facts are read
	// in the write's transaction), before the commit.
	for _, want := range []struct {
		name          string
		parent, after tracetest.SpanStub
	}{{"sluice.validate", rpc, update}, {"sluice.authorize", update, commit}} {
		var found *tracetest.SpanStub
		for _, s := range byName(exporter.GetSpans(), want.name) {
			if s.Parent.SpanID() == want.parent.SpanContext.SpanID() {
				found = &s
			}
		}
		if found == nil {
			t.Errorf("no %s span under %s", want.name, want.parent.Name)
			continue
		}
		if found.EndTime.After(want.after.StartTime) {
			t.Errorf("%s ended at %v, after %s started at %v", want.name, found.EndTime, want.after.Name, want.after.StartTime)
		}
		if want.name == "sluice.authorize" && (attr(*found, "sluice.action").AsString() != "user.set_avatar_url" || !attr(*found, "sluice.allowed").AsBool()) {
			t.Errorf("authorize span attributes %v, want user.set_avatar_url allowed", found.Attributes)
		}
	}
	queries := 0
	for _, s := range exporter.GetSpans() {
		if s.Parent.SpanID() == update.SpanContext.SpanID() && len(s.Name) > 3 && s.Name[:3] == "pg " {
			queries++
		}
	}
	if queries < 2 {
		t.Errorf("%d query spans under the update, want the transaction's statements", queries)
	}
	trace := rpc.SpanContext.TraceID()
	for _, f := range fanouts {
		if f.SpanContext.TraceID() != trace {
			t.Errorf("fan-out in trace %s, want the write's %s", f.SpanContext.TraceID(), trace)
		}
		if len(f.Links) != 1 || f.Links[0].SpanContext.SpanID() != publish.SpanContext.SpanID() {
			t.Errorf("fan-out links %v, want the publication", f.Links)
		}
		if streams := attr(f, "sluice.streams").AsInt64(); streams != 1 {
			t.Errorf("fan-out reached %d streams, want 1 per instance", streams)
		}
		if !attr(f, "sluice.handed_out").AsBool() || attr(f, "sluice.coalesced").Type() != attribute.INT64 || attr(f, "sluice.coalesced").AsInt64() != 0 {
			t.Errorf("fan-out attributes %v, want handed out, none coalesced", f.Attributes)
		}
		// It ends when the last stream wrote the change: after the commit.
		last := attr(f, "sluice.last_delivery_seconds").AsFloat64()
		if last <= 0 || f.EndTime.Before(commit.EndTime) {
			t.Errorf("fan-out: time to last delivery %vs, ended %v (commit ended %v)", last, f.EndTime, commit.EndTime)
		}
	}
}

// attr returns the value of the span's attribute key (an invalid value if
// it has none).
func attr(s tracetest.SpanStub, key attribute.Key) attribute.Value {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.Value
		}
	}
	return attribute.Value{}
}
