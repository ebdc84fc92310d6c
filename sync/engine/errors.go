package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by the Store. Callers compare with errors.Is; the RPC edge
// maps them to Connect codes.
var (
	// ErrNotFound means the record or session does not exist (or is deleted,
	// revoked or expired).
	ErrNotFound = errors.New("not found")
	// ErrConflict means a uniqueness rule was violated (SQLSTATE 23505) or a
	// record was written into a scope other than its own.
	ErrConflict = errors.New("conflict")
	// ErrRetry means the transaction lost a serialization or deadlock race
	// (SQLSTATE 40001, 40P01) more often than the Store retries.
	ErrRetry = errors.New("transaction conflict, retry")
	// ErrUnavailable means Postgres could not be reached or dropped the
	// connection (restart, failover, network): nothing was written, and
	// the call may be retried as it is.
	ErrUnavailable = errors.New("database unavailable")
	// ErrOutcomeUnknown means the connection failed or the deadline passed
	// while COMMIT was in flight, and the Store could not find out whether
	// the transaction committed. A retry with the same idempotency key is
	// safe: it either replays the committed result or writes once.
	ErrOutcomeUnknown = errors.New("outcome of the write unknown")
)

// DBError turns a pgx error into one of the package errors (ErrNotFound,
// ErrConflict, ErrRetry, ErrUnavailable), by SQLSTATE: for packages that
// own SQL of their own (the auth package's sessions), so their errors mean
// what the engine's do.
func DBError(err error) error { return translate(err) }

// translate turns a pgx error into one of the package errors, by SQLSTATE and
// never by matching message text. Other errors are returned unchanged.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case pgErr.Code == "40001", pgErr.Code == "40P01":
			return fmt.Errorf("%w: %w", ErrRetry, err)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			pgErr.Code == "57P01", // admin_shutdown
			pgErr.Code == "57P02", // crash_shutdown
			pgErr.Code == "57P03", // cannot_connect_now (starting up, recovery)
			pgErr.Code == "53300": // too_many_connections
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if lostConnection(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// lostConnection reports whether err says the connection to Postgres could
// not be made or broke, as opposed to an error of the statement itself.
func lostConnection(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the caller's doing, not the database's
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) ||
		pgconn.SafeToRetry(err)
}
