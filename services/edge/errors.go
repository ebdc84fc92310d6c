package edge

import (
	"context"
	"errors"
	"log/slog"
	gosync "sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/sync"
)

// Errors returned by services that the edge maps to codes.
var (
	// ErrShutdown ends a stream because the server is stopping; clients
	// treat its code (unavailable) as "resume with your cursors".
	ErrShutdown = errors.New("server shutting down; resume the stream")
	// ErrRateLimited means the caller must slow down.
	ErrRateLimited = errors.New("rate limited")
)

// PreconditionError refuses a call because of the state of the data (the
// last owner cannot leave, a channel is archived). Its message is shown to
// the caller as failed_precondition.
type PreconditionError struct{ Msg string }

// Error implements error.
func (e *PreconditionError) Error() string { return e.Msg }

// Precondition returns a PreconditionError.
func Precondition(msg string) error { return &PreconditionError{Msg: msg} }

// internalMessage is all a client learns about an unexpected error.
const internalMessage = "internal error"

// ToConnect maps err to a Connect error with a message that is safe to show
// the caller. Unexpected errors are logged once here and become Internal
// with a fixed message. It is the only place errors become codes.
func ToConnect(log *slog.Logger, procedure string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	var ve *ValidationError
	var denial *authz.Denial
	var pre *PreconditionError
	switch {
	case errors.As(err, &pre):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New(pre.Msg))
	case errors.As(err, &ve):
		return ve.connectError()
	case errors.As(err, &ce):
		return ce // built by connect-go itself (limits, decoding)
	case errors.As(err, &denial):
		if denial.Hide {
			return connect.NewError(connect.CodeNotFound, errors.New("not found"))
		}
		return connect.NewError(connect.CodePermissionDenied, errors.New(denial.Error()))
	case errors.Is(err, authz.ErrUnauthenticated):
		return connect.NewError(connect.CodeUnauthenticated, errors.New("missing, invalid or expired credentials"))
	case errors.Is(err, authz.ErrHidden), errors.Is(err, sync.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("not found"))
	case errors.Is(err, authz.ErrDenied):
		return connect.NewError(connect.CodePermissionDenied, errors.New("permission denied"))
	case errors.Is(err, sync.ErrIdempotencyMismatch):
		return connect.NewError(connect.CodeFailedPrecondition, sync.ErrIdempotencyMismatch)
	case errors.Is(err, sync.ErrConflict):
		return connect.NewError(connect.CodeAborted, errors.New("conflicting write"))
	case errors.Is(err, sync.ErrRetry):
		return connect.NewError(connect.CodeAborted, errors.New("transaction conflict; retry"))
	case errors.Is(err, sync.ErrOutcomeUnknown):
		return connect.NewError(connect.CodeUnavailable, errors.New("the write may or may not have committed; retry with the same idempotency key"))
	case errors.Is(err, sync.ErrUnavailable):
		return connect.NewError(connect.CodeUnavailable, errors.New("database unavailable; retry"))
	case errors.Is(err, ErrShutdown):
		return connect.NewError(connect.CodeUnavailable, ErrShutdown)
	case errors.Is(err, ErrRateLimited):
		return connect.NewError(connect.CodeResourceExhausted, errors.New("too many requests; slow down"))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	}
	log.Error("internal error", "procedure", procedure, "err", err)
	return connect.NewError(connect.CodeInternal, errors.New(internalMessage))
}

// errorInterceptor maps handler errors with ToConnect and logs every call.
type errorInterceptor struct {
	log    *slog.Logger
	outage outageLog
}

// outageLog reports calls that failed because Postgres was unavailable:
// once when an outage starts, then at most once per outageEvery with the
// count since, instead of one line per call.
type outageLog struct {
	mu     gosync.Mutex
	last   time.Time
	failed int
}

const outageEvery = 30 * time.Second

func (o *outageLog) note(log *slog.Logger, procedure string, err error) {
	if !errors.Is(err, sync.ErrUnavailable) && !errors.Is(err, sync.ErrOutcomeUnknown) {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed++
	if now := time.Now(); now.Sub(o.last) >= outageEvery {
		log.Warn("database unavailable; calls answered unavailable", "procedure", procedure, "failedCalls", o.failed, "err", err)
		o.last, o.failed = now, 0
	}
}

// ErrorInterceptor returns the interceptor that maps every handler error to
// a Connect code (ToConnect) and logs each call at debug level.
func ErrorInterceptor(log *slog.Logger) connect.Interceptor {
	return &errorInterceptor{log: log}
}

func (i *errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		i.outage.note(i.log, req.Spec().Procedure, err)
		err = ToConnect(i.log, req.Spec().Procedure, err)
		i.logCall(ctx, req.Spec().Procedure, start, err)
		return res, err
	}
}

func (i *errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.outage.note(i.log, conn.Spec().Procedure, err)
		err = ToConnect(i.log, conn.Spec().Procedure, err)
		i.logCall(ctx, conn.Spec().Procedure, start, err)
		return err
	}
}

func (i *errorInterceptor) logCall(ctx context.Context, procedure string, start time.Time, err error) {
	if !i.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	i.log.Debug("rpc", "procedure", procedure, "code", code, "duration", time.Since(start))
}

// badRequest builds the InvalidArgument error for field violations.
func badRequest(msg string, violations []FieldViolation) *connect.Error {
	ce := connect.NewError(connect.CodeInvalidArgument, errors.New(msg))
	br := &errdetails.BadRequest{}
	for _, v := range violations {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{
			Field:       v.Field,
			Description: v.Description,
		})
	}
	if d, err := connect.NewErrorDetail(br); err == nil {
		ce.AddDetail(d)
	}
	return ce
}
