package edge

import (
	"context"
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
// the interceptors (outermost first), the request size limit and the
// compression threshold.
func HandlerOptions(interceptors ...connect.Interceptor) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithInterceptors(interceptors...),
		connect.WithReadMaxBytes(MaxRequestBytes),
		connect.WithCompressMinBytes(CompressMinBytes),
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
