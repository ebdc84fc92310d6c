package edge

import (
	"context"
	"crypto/sha256"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/sync/engine"
)

// IdempotencyHeader carries a client's idempotency key on a mutating call.
const IdempotencyHeader = "Idempotency-Key"

type idempotencyInterceptor struct{}

// IdempotencyInterceptor lets every mutating unary RPC take an
// Idempotency-Key header (1–128 printable ASCII characters, unique per
// caller): the Store records the key in the writing transaction, and a
// retry with the same key and request returns the original result and
// writes nothing. Reusing a key for another request is failed_precondition.
// It must run after authentication: keys are scoped to the principal.
func IdempotencyInterceptor() connect.Interceptor { return idempotencyInterceptor{} }

func (idempotencyInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		key := req.Header().Get(IdempotencyHeader)
		spec := req.Spec()
		if key == "" || spec.IdempotencyLevel == connect.IdempotencyNoSideEffects {
			return next(ctx, req)
		}
		if len(key) > 128 || !printableASCII(key) {
			return nil, Invalid(IdempotencyHeader, "must be 1 to 128 printable ASCII characters")
		}
		p := authz.PrincipalFrom(ctx)
		msg, ok := req.Any().(proto.Message)
		if p == nil || !ok {
			return next(ctx, req) // Login: nothing to protect, no principal to scope by
		}
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		ctx = engine.WithIdempotency(ctx, engine.Idempotency{Principal: p.ID, Key: key, Procedure: spec.Procedure, RequestHash: sum[:]})
		return next(ctx, req)
	}
}

func (idempotencyInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (idempotencyInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
