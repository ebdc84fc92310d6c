package edge

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"connectrpc.com/connect"
)

// Limits of every handler.
const (
	// MaxRequestBytes bounds a request message; larger requests are refused
	// with ResourceExhausted before they are decoded.
	MaxRequestBytes = 64 << 10
	// CompressMinBytes is the smallest response that is gzipped. connect-go
	// compresses every message by default, which costs most of the fan-out
	// CPU on the small messages a stream carries.
	CompressMinBytes = 4 << 10
)

// HandlerOptions returns the options every service handler is mounted with:
// the response headers (outermost), the interceptors (outermost first)
// with panic recovery just outside the ErrorInterceptor, the check that
// refuses bodies that did not decode (innermost), the edge's codecs, a
// gate on the declared body size and GET requests' query, the request size
// limit and the compression threshold.
//
// A panic in a handler or an interceptor inside the ErrorInterceptor is
// recovered once, here: it is logged with the procedure and the stack (to
// the ErrorInterceptor's logger; slog's default without one) and answered
// internal "internal error", which interceptors outside it (metrics) see;
// the connection stays up. Without an ErrorInterceptor, recovery is
// outermost.
func HandlerOptions(interceptors ...connect.Interceptor) []connect.HandlerOption {
	log, at := slog.Default(), 0
	for i, ic := range interceptors {
		if ei, ok := ic.(*errorInterceptor); ok {
			log, at = ei.log, i
		}
	}
	outer := append([]connect.Interceptor{headerInterceptor{}}, interceptors[:at]...)
	inner := append(append([]connect.Interceptor(nil), interceptors[at:]...), decodeCheck{})
	opts := []connect.HandlerOption{
		connect.WithInterceptors(outer...),
		connect.WithRecover(recoverPanic(log)),
		connect.WithInterceptors(inner...),
		connect.WithRequestGate(checkRequest),
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(CompressMinBytes),
	}
	return append(opts, codecs(log)...)
}

// recoverPanic returns connect-go's panic handler: log the panic once with
// the procedure and stack, answer internal with the fixed message.
func recoverPanic(log *slog.Logger) func(context.Context, connect.Spec, http.Header, any) error {
	return func(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
		log.Error("internal error: panic", "procedure", spec.Procedure, "panic", p, "stack", string(debug.Stack()))
		return clientError(connect.CodeInternal, internalMessage)
	}
}

// headerInterceptor sets the headers every RPC response carries:
// X-Content-Type-Options: nosniff, so that no browser ever renders a
// response body as something other than its declared type.
type headerInterceptor struct{}

func (headerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if info, ok := connect.CallInfoForHandlerContext(ctx); ok && !req.Spec().IsClient {
			info.ResponseHeader().Set("X-Content-Type-Options", "nosniff")
		}
		return next(ctx, req)
	}
}

func (headerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (headerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		conn.ResponseHeader().Set("X-Content-Type-Options", "nosniff")
		return next(ctx, conn)
	}
}

// UnaryTimeout bounds every unary call. The HTTP server has no write
// timeout (it would cut streams), so unary calls get a deadline here.
const UnaryTimeout = 30 * time.Second

type deadlineInterceptor struct{ d time.Duration }

// DeadlineInterceptor bounds each unary call to d (streams are unbounded;
// they end with the client, the session or the server).
func DeadlineInterceptor(d time.Duration) connect.Interceptor { return deadlineInterceptor{d: d} }

func (i deadlineInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, cancel := context.WithTimeout(ctx, i.d)
		defer cancel()
		return next(ctx, req)
	}
}

func (i deadlineInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i deadlineInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
