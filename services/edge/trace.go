package edge

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the edge's spans.
const tracerName = "github.com/sluicehq/sluice/services/edge"

// Validate is Struct in a span of its own, "sluice.validate", when ctx
// belongs to a traced call (the span is made by the call's own tracer
// provider; untraced calls pay nothing). The span says whether cmd was
// valid and how many fields were not.
func (v *Validator) Validate(ctx context.Context, cmd any) error {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return v.Struct(cmd)
	}
	_, span := parent.TracerProvider().Tracer(tracerName).Start(ctx, "sluice.validate",
		trace.WithAttributes(attribute.String("sluice.command", fmt.Sprintf("%T", cmd))))
	defer span.End()
	err := v.Struct(cmd)
	var ve *ValidationError
	switch {
	case err == nil:
		span.SetAttributes(attribute.Bool("sluice.valid", true))
	case errors.As(err, &ve):
		span.SetAttributes(attribute.Bool("sluice.valid", false), attribute.Int("sluice.violations", len(ve.Violations)))
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
