package sync

import (
	"errors"
	"fmt"

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
)

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
		switch pgErr.Code {
		case "23505":
			return fmt.Errorf("%w: %w", ErrConflict, err)
		case "40001", "40P01":
			return fmt.Errorf("%w: %w", ErrRetry, err)
		}
	}
	return err
}
