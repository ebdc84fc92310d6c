package edge

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/authz"
)

// callNote is what inner interceptors learn about a call for its log line.
// Only the call's own goroutine writes it, before the outer interceptor
// reads it.
type callNote struct {
	principal string
}

type callNoteKey struct{}

// startCall gives the call a note when its log line will be written.
func (i *errorInterceptor) startCall(ctx context.Context) (context.Context, *callNote) {
	if !i.log.Enabled(ctx, slog.LevelDebug) {
		return ctx, nil
	}
	n := &callNote{}
	return context.WithValue(ctx, callNoteKey{}, n), n
}

// logCall writes the call's log line: procedure, principal (empty for an
// anonymous call), Connect code ("ok" for success) and duration, logged
// with the call's trace context so that the logger adds its trace id; an
// untraced call carries the trace id the caller sent in a W3C traceparent
// header, if any.
func (i *errorInterceptor) logCall(ctx context.Context, n *callNote, procedure string, h http.Header, start time.Time, err error) {
	if n == nil {
		return
	}
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	if !trace.SpanContextFromContext(ctx).IsValid() && h.Get("traceparent") != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(h))
	}
	i.log.DebugContext(ctx, "rpc", "procedure", procedure, "principal", n.principal, "code", code, "duration", time.Since(start))
}

// CallerInterceptor notes the authenticated principal of every call for
// the call's log line (ErrorInterceptor). Install it inside the
// authentication interceptor.
func CallerInterceptor() connect.Interceptor { return callerInterceptor{} }

type callerInterceptor struct{}

func noteCaller(ctx context.Context) {
	if n, ok := ctx.Value(callNoteKey{}).(*callNote); ok {
		if p := authz.PrincipalFrom(ctx); p != nil {
			n.principal = p.ID
		}
	}
}

func (callerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		noteCaller(ctx)
		return next(ctx, req)
	}
}

func (callerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (callerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		noteCaller(ctx)
		return next(ctx, conn)
	}
}
