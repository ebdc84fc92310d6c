package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/sync/engine"
)

const testProcedure = "/sluice.test.v1.TestService/Do"

func TestToConnect(t *testing.T) {
	t.Parallel()
	secret := "pq: relation \"records\" does not exist at 10.0.0.5"
	tests := []struct {
		name string
		err  error
		code connect.Code
		msg  string // exact message; "" means don't check
	}{
		{"authz unauthenticated", authz.ErrUnauthenticated, connect.CodeUnauthenticated, ""},
		{"wrapped unauthenticated", fmt.Errorf("login: %w", authz.ErrUnauthenticated), connect.CodeUnauthenticated, ""},
		{"hidden denial", authz.Hide("channel-member", "not a member of channel 7"), connect.CodeNotFound, "not found"},
		{"visible denial", authz.Deny("require-user", "only the user themselves may do this"), connect.CodePermissionDenied,
			"permission denied: only the user themselves may do this"},
		{"wrapped denial", fmt.Errorf("set avatar: %w", authz.Deny("r", "why")), connect.CodePermissionDenied, "permission denied: why"},
		{"ErrHidden", authz.ErrHidden, connect.CodeNotFound, "not found"},
		{"ErrDenied", authz.ErrDenied, connect.CodePermissionDenied, "permission denied"},
		{"store not found", fmt.Errorf("get user/1: %w", engine.ErrNotFound), connect.CodeNotFound, "not found"},
		{"store conflict", fmt.Errorf("put user/1: %w", engine.ErrConflict), connect.CodeAborted, ""},
		{"store retry", fmt.Errorf("update: %w", engine.ErrRetry), connect.CodeAborted, ""},
		{"database unavailable", fmt.Errorf("begin: %w: %w", engine.ErrUnavailable, errors.New(secret)), connect.CodeUnavailable,
			"database unavailable; retry"},
		{"outcome unknown", fmt.Errorf("commit: %w: %w", engine.ErrOutcomeUnknown, errors.New(secret)), connect.CodeUnavailable,
			"the write may or may not have committed; retry with the same idempotency key"},
		{"outcome unknown at the deadline", fmt.Errorf("commit: %w: %w", engine.ErrOutcomeUnknown, context.DeadlineExceeded), connect.CodeUnavailable, ""},
		{"shutdown", ErrShutdown, connect.CodeUnavailable, ""},
		{"rate limited", ErrRateLimited, connect.CodeResourceExhausted, ""},
		{"canceled", context.Canceled, connect.CodeCanceled, ""},
		{"wrapped canceled", fmt.Errorf("read: %w", context.Canceled), connect.CodeCanceled, ""},
		{"deadline", context.DeadlineExceeded, connect.CodeDeadlineExceeded, ""},
		{"connect-built error keeps its code, not its text", connect.NewError(connect.CodeResourceExhausted, errors.New("message size 70000 is larger than configured max 65536")),
			connect.CodeResourceExhausted, "request too large: at most 65536 bytes"},
		{"unknown", errors.New(secret), connect.CodeInternal, "internal error"},
		{"wrapped unknown", fmt.Errorf("insert record: %w", errors.New(secret)), connect.CodeInternal, "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			err := ToConnect(log, testProcedure, tt.err)
			var ce *connect.Error
			if !errors.As(err, &ce) {
				t.Fatalf("ToConnect(%v) = %T %v, want *connect.Error", tt.err, err, err)
			}
			if ce.Code() != tt.code {
				t.Errorf("code = %v, want %v", ce.Code(), tt.code)
			}
			if tt.msg != "" && ce.Message() != tt.msg {
				t.Errorf("message = %q, want %q", ce.Message(), tt.msg)
			}
			if strings.Contains(ce.Error(), secret) {
				t.Errorf("client-visible error %q leaks the internal error text", ce.Error())
			}
			// Unexpected errors are logged once, here; mapped ones are not.
			lines := strings.Count(logs.String(), "\n")
			if tt.code == connect.CodeInternal {
				if lines != 1 || !strings.Contains(logs.String(), "does not exist at 10.0.0.5") {
					t.Errorf("internal error logged %d times (%q), want once with the original error", lines, logs.String())
				}
				if !strings.Contains(logs.String(), testProcedure) {
					t.Errorf("log %q lacks the procedure", logs.String())
				}
			} else if lines != 0 {
				t.Errorf("mapped error logged: %q", logs.String())
			}
		})
	}
}

func TestToConnectNil(t *testing.T) {
	t.Parallel()
	if err := ToConnect(slog.New(slog.DiscardHandler), testProcedure, nil); err != nil {
		t.Fatalf("ToConnect(nil) = %v", err)
	}
}

func TestToConnectValidationError(t *testing.T) {
	t.Parallel()
	verr := &ValidationError{Violations: []FieldViolation{
		{Field: "avatar_url", Description: "must be an absolute http or https URL"},
		{Field: "display_name", Description: "is required"},
	}}
	err := ToConnect(slog.New(slog.DiscardHandler), testProcedure, fmt.Errorf("set profile: %w", verr))
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
		t.Fatalf("ToConnect = %v, want invalid_argument", err)
	}
	got := badRequestOf(t, ce)
	if len(got) != len(verr.Violations) {
		t.Fatalf("field violations = %v, want %v", got, verr.Violations)
	}
	for i, v := range verr.Violations {
		if got[i].GetField() != v.Field || got[i].GetDescription() != v.Description {
			t.Errorf("violation %d = %v, want %v", i, got[i], v)
		}
	}
}

// badRequestOf returns the field violations of ce's BadRequest detail.
func badRequestOf(t *testing.T, ce *connect.Error) []*errdetails.BadRequest_FieldViolation {
	t.Helper()
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("detail %s: %v", d.Type(), err)
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	t.Fatalf("error %v has no BadRequest detail", ce)
	return nil
}

// TestErrorInterceptorOverTheWire checks what a client actually receives:
// the mapped code, the field violations, and never an internal error's text.
func TestErrorInterceptorOverTheWire(t *testing.T) {
	t.Parallel()
	secret := "dial tcp 10.1.2.3:5432: connection refused"
	errs := map[string]error{
		"/test.v1.T/Internal":   fmt.Errorf("insert record: %w", errors.New(secret)),
		"/test.v1.T/Invalid":    Invalid("avatar_url", "must be an absolute http or https URL"),
		"/test.v1.T/Hidden":     authz.Hide("r", "secret reason"),
		"/test.v1.T/Conflict":   engine.ErrConflict,
		"/test.v1.T/Shutdown":   ErrShutdown,
		"/test.v1.T/Unauthed":   authz.ErrUnauthenticated,
		"/test.v1.T/RateLimits": ErrRateLimited,
	}
	want := map[string]connect.Code{
		"/test.v1.T/Internal":   connect.CodeInternal,
		"/test.v1.T/Invalid":    connect.CodeInvalidArgument,
		"/test.v1.T/Hidden":     connect.CodeNotFound,
		"/test.v1.T/Conflict":   connect.CodeAborted,
		"/test.v1.T/Shutdown":   connect.CodeUnavailable,
		"/test.v1.T/Unauthed":   connect.CodeUnauthenticated,
		"/test.v1.T/RateLimits": connect.CodeResourceExhausted,
	}
	mux := http.NewServeMux()
	opts := HandlerOptions(ErrorInterceptor(slog.New(slog.DiscardHandler)))
	for proc, e := range errs {
		mux.Handle(proc, connect.NewUnaryHandler(proc, func(context.Context, *connect.Request[emptypb.Empty]) (*connect.Response[emptypb.Empty], error) {
			return nil, e
		}, opts...))
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	for proc, code := range want {
		client := connect.NewClient[emptypb.Empty, emptypb.Empty](srv.Client(), srv.URL+proc)
		_, err := client.CallUnary(t.Context(), connect.NewRequest(&emptypb.Empty{}))
		if got := connect.CodeOf(err); got != code {
			t.Errorf("%s: code %v (%v), want %v", proc, got, err, code)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "secret reason") {
			t.Errorf("%s: client sees %q", proc, err.Error())
		}
		var ce *connect.Error
		if proc == "/test.v1.T/Internal" && (!errors.As(err, &ce) || ce.Message() != "internal error") {
			t.Errorf("%s: client sees %v, want message %q", proc, err, "internal error")
		}
		if proc == "/test.v1.T/Invalid" {
			if !errors.As(err, &ce) {
				t.Fatalf("%s: %T", proc, err)
			}
			if v := badRequestOf(t, ce); len(v) != 1 || v[0].GetField() != "avatar_url" {
				t.Errorf("%s: field violations %v, want one on avatar_url", proc, v)
			}
		}
	}
}
