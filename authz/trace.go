package authz

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the authorization spans.
const tracerName = "github.com/sluicehq/sluice/authz"

// startSpan starts a span named name under the span of ctx, with that
// span's own tracer provider; nil when ctx belongs to no traced call.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(tracerName).Start(ctx, name)
}

// endDecision records a decision on span (nil: not traced) and ends it:
// sluice.allowed, and for a refusal the rule; an error that is no
// decision (a failed lookup) marks the span failed.
func endDecision(span trace.Span, action string, err error) {
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("sluice.action", action), attribute.Bool("sluice.allowed", err == nil))
	var d *Denial
	switch {
	case err == nil:
	case errors.As(err, &d):
		span.SetAttributes(attribute.String("sluice.rule", d.Rule))
	case errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrDenied) || errors.Is(err, ErrHidden):
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
