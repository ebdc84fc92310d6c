package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/sync/engine"
)

// Errors returned by services that the edge maps to codes.
var (
	// ErrShutdown ends a stream because the server is stopping; clients
	// treat its code (unavailable) as "resume with your cursors".
	ErrShutdown = errors.New("server shutting down; resume the stream")
	// ErrRateLimited means the caller must slow down.
	ErrRateLimited = errors.New("rate limited")
	// ErrMalformed is a request body that does not decode (not JSON or
	// protobuf of the request's type). The edge answers invalid_argument
	// "malformed request body".
	ErrMalformed = errors.New("malformed request body")
)

// PreconditionError refuses a call because of the state of the data (the
// last owner cannot leave, a channel is archived). Its message is shown to
// the caller as failed_precondition.
type PreconditionError struct{ Msg string }

// Error implements error.
func (e *PreconditionError) Error() string { return e.Msg }

// Precondition returns a PreconditionError.
func Precondition(msg string) error { return &PreconditionError{Msg: msg} }

// UnavailableError is a dependency other than the database (an identity
// backend, a key server) that could not answer. Its message is shown to the
// caller as unavailable: retry later.
type UnavailableError struct{ Msg string }

// Error implements error.
func (e *UnavailableError) Error() string { return e.Msg }

// Unavailable returns an UnavailableError.
func Unavailable(msg string) error { return &UnavailableError{Msg: msg} }

// Exhausted returns a resource_exhausted error whose message, written for
// the client, says which limit was reached.
func Exhausted(msg string) error { return clientError(connect.CodeResourceExhausted, msg) }

// Denied returns a permission_denied error whose message, written for the
// client, says why the call is refused (for refusals that are not a
// policy's, such as a session cookie sent from another origin).
func Denied(msg string) error { return clientError(connect.CodePermissionDenied, msg) }

// AlreadyExists returns an already_exists error whose message, written for
// the client, says what exists (a member who is invited again).
func AlreadyExists(msg string) error { return clientError(connect.CodeAlreadyExists, msg) }

// internalMessage is all a client learns about an unexpected error.
const internalMessage = "internal error"

// clientMessage is the underlying error of every Connect error ToConnect
// builds: a message written for the client. ToConnect passes an error
// that carries one on unchanged, so mapping twice changes nothing.
type clientMessage string

func (m clientMessage) Error() string { return string(m) }

// clientError returns a Connect error with a message written for the
// client.
func clientError(code connect.Code, msg string) *connect.Error {
	return connect.NewError(code, clientMessage(msg))
}

// ToConnect maps err to a Connect error with a message that is safe to show
// the caller. Unexpected errors are logged once here and become Internal
// with a fixed message. It is the only place errors become codes.
func ToConnect(log *slog.Logger, procedure string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	var cm clientMessage
	var ve *ValidationError
	var denial *authz.Denial
	var pre *PreconditionError
	var un *UnavailableError
	switch {
	case errors.As(err, &ce) && errors.As(ce.Unwrap(), &cm):
		return ce // mapped here already
	case errors.As(err, &pre):
		return clientError(connect.CodeFailedPrecondition, pre.Msg)
	case errors.As(err, &un):
		return clientError(connect.CodeUnavailable, un.Msg)
	case errors.As(err, &ve):
		return ve.connectError()
	case errors.Is(err, ErrMalformed):
		return clientError(connect.CodeInvalidArgument, ErrMalformed.Error())
	case errors.As(err, &ce):
		return fromConnect(log, procedure, ce)
	case errors.As(err, &denial):
		if denial.Hide {
			return clientError(connect.CodeNotFound, "not found")
		}
		return clientError(connect.CodePermissionDenied, denial.Error())
	case errors.Is(err, authz.ErrUnauthenticated):
		return clientError(connect.CodeUnauthenticated, "missing, invalid or expired credentials")
	case errors.Is(err, authz.ErrHidden), errors.Is(err, engine.ErrNotFound):
		return clientError(connect.CodeNotFound, "not found")
	case errors.Is(err, authz.ErrDenied):
		return clientError(connect.CodePermissionDenied, "permission denied")
	case errors.Is(err, engine.ErrIdempotencyMismatch):
		return clientError(connect.CodeFailedPrecondition, engine.ErrIdempotencyMismatch.Error())
	case errors.Is(err, engine.ErrConflict):
		return clientError(connect.CodeAborted, "conflicting write")
	case errors.Is(err, engine.ErrRetry):
		return clientError(connect.CodeAborted, "transaction conflict; retry")
	case errors.Is(err, engine.ErrOutcomeUnknown):
		return clientError(connect.CodeUnavailable, "the write may or may not have committed; retry with the same idempotency key")
	case errors.Is(err, engine.ErrUnavailable):
		return clientError(connect.CodeUnavailable, "database unavailable; retry")
	case errors.Is(err, ErrShutdown):
		return clientError(connect.CodeUnavailable, ErrShutdown.Error())
	case errors.Is(err, ErrRateLimited):
		return clientError(connect.CodeResourceExhausted, "too many requests; slow down")
	case errors.Is(err, context.Canceled):
		return clientError(connect.CodeCanceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return clientError(connect.CodeDeadlineExceeded, "deadline exceeded")
	}
	log.Error("internal error", "procedure", procedure, "err", err)
	return clientError(connect.CodeInternal, internalMessage)
}

// errTooLarge is the message of a request over MaxRequestBytes.
var errTooLarge = fmt.Sprintf("request too large: at most %d bytes", MaxRequestBytes)

// fromConnect maps an error connect-go built itself (reading, decoding or
// encoding a message, a size limit, the protocol): its code is kept where
// it tells the client something, its text (Go types, decoder positions,
// configured limits) is replaced. Anything else is logged as internal.
func fromConnect(log *slog.Logger, procedure string, ce *connect.Error) error {
	switch ce.Code() {
	case connect.CodeInvalidArgument:
		return clientError(connect.CodeInvalidArgument, ErrMalformed.Error())
	case connect.CodeResourceExhausted:
		return clientError(connect.CodeResourceExhausted, errTooLarge)
	case connect.CodeUnimplemented:
		return clientError(connect.CodeUnimplemented, "unsupported request")
	case connect.CodeCanceled:
		return clientError(connect.CodeCanceled, "canceled")
	case connect.CodeDeadlineExceeded:
		return clientError(connect.CodeDeadlineExceeded, "deadline exceeded")
	}
	log.Error("internal error", "procedure", procedure, "err", ce)
	return clientError(connect.CodeInternal, internalMessage)
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
	mu     sync.Mutex
	last   time.Time
	failed int
}

const outageEvery = 30 * time.Second

func (o *outageLog) note(log *slog.Logger, procedure string, err error) {
	if !errors.Is(err, engine.ErrUnavailable) && !errors.Is(err, engine.ErrOutcomeUnknown) {
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
// a Connect code (ToConnect) and logs each call at debug level (see
// CallerInterceptor).
func ErrorInterceptor(log *slog.Logger) connect.Interceptor {
	return &errorInterceptor{log: log}
}

func (i *errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		ctx, note := i.startCall(ctx)
		res, err := next(ctx, req)
		i.outage.note(i.log, req.Spec().Procedure, err)
		err = i.toConnect(ctx, req.Spec().Procedure, err)
		i.logCall(ctx, note, req.Spec().Procedure, req.Header(), start, err)
		return res, err
	}
}

func (i *errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		ctx, note := i.startCall(ctx)
		err := next(ctx, conn)
		i.outage.note(i.log, conn.Spec().Procedure, err)
		err = i.toConnect(ctx, conn.Spec().Procedure, err)
		i.logCall(ctx, note, conn.Spec().Procedure, conn.RequestHeader(), start, err)
		return err
	}
}

// toConnect is ToConnect, except that a failure of connect-go itself
// (writing to or reading from the connection) after the client went away
// is canceled, not an internal error worth a log line.
func (i *errorInterceptor) toConnect(ctx context.Context, procedure string, err error) error {
	var ce *connect.Error
	var cm clientMessage
	if err != nil && ctx.Err() != nil && errors.As(err, &ce) && !errors.As(ce.Unwrap(), &cm) {
		return clientError(connect.CodeCanceled, "canceled")
	}
	return ToConnect(i.log, procedure, err)
}

// badRequest builds the InvalidArgument error for field violations.
func badRequest(msg string, violations []FieldViolation) *connect.Error {
	ce := clientError(connect.CodeInvalidArgument, msg)
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
