package engine

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerName is the instrumentation scope of the engine's spans.
const tracerName = "github.com/sluicehq/sluice/sync/engine"

// tracerOf returns the engine's tracer from tp; nil means no tracing.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// propagator carries trace context in NATS message headers (W3C trace
// context), so a change's fan-out on every instance joins the trace of the
// write that committed it.
var propagator = propagation.TraceContext{}

// natsCarrier adapts NATS headers to a propagation.TextMapCarrier.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c natsCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// QueryTracer returns a pgx tracer that makes a span of every query, named
// by its first word (SELECT, INSERT, WITH, ...), with the statement as an
// attribute (never its arguments), and of every batch (pgx.BatchTracer).
// Set it as pgx's ConnConfig.Tracer.
func QueryTracer(tp trace.TracerProvider) pgx.QueryTracer {
	return queryTracer{t: tracerOf(tp)}
}

type queryTracer struct{ t trace.Tracer }

type querySpanKey struct{}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx // only queries inside a traced call
	}
	sql := data.SQL
	if len(sql) > 2000 {
		sql = sql[:2000]
	}
	ctx, span := q.t.Start(ctx, "pg "+firstWord(sql), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.String("db.statement", sql)))
	return context.WithValue(ctx, querySpanKey{}, span)
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if span, ok := ctx.Value(querySpanKey{}).(trace.Span); ok {
		endSpan(span, data.Err)
	}
}

type batchSpanKey struct{}

// TraceBatchStart makes a span of a batch (a transaction's BEGIN goes in
// one with its first statement): "pg batch", with a child span for each
// statement as its result arrives.
func (q queryTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	n := 0
	if data.Batch != nil {
		n = len(data.Batch.QueuedQueries)
	}
	ctx, span := q.t.Start(ctx, "pg batch", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.Int("db.batch.size", n)))
	return context.WithValue(ctx, batchSpanKey{}, span)
}

// TraceBatchQuery records one statement of a batch.
func (q queryTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	if _, ok := ctx.Value(batchSpanKey{}).(trace.Span); !ok {
		return
	}
	sql := data.SQL
	if len(sql) > 2000 {
		sql = sql[:2000]
	}
	_, span := q.t.Start(ctx, "pg "+firstWord(sql), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", "postgresql"), attribute.String("db.statement", sql)))
	endSpan(span, data.Err)
}

// TraceBatchEnd ends the batch's span.
func (q queryTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	if span, ok := ctx.Value(batchSpanKey{}).(trace.Span); ok {
		endSpan(span, data.Err)
	}
}

// firstWord returns the first word of an SQL statement, upper-cased.
func firstWord(sql string) string {
	start := -1
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		switch {
		case letter && start < 0:
			start = i
		case !letter && start >= 0:
			return upper(sql[start:i])
		}
	}
	if start >= 0 {
		return upper(sql[start:])
	}
	return "query"
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
