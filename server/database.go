package server

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// localPostgres is the server sluiced uses when no database URL is
// configured, if it answers; only when nothing answers there does sluiced
// start a private cluster.
const localPostgres = "postgres://localhost:5432/sluice?sslmode=disable"

// localServerError returns a clear error if err (of connecting to the
// local server at url) came from a server that answered: a refused login
// (wrong or missing password, unknown role, no pg_hba.conf entry) or any
// other error the server sent. Falling back to an empty private database
// would hide the problem and start the application on empty data. It
// returns nil when nothing answered (connection refused, timeout), where
// the private cluster is the intended fallback.
func localServerError(url string, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return nil
	}
	shown := redactedURL(url)
	switch pgErr.Code {
	case "28P01", "28000": // invalid_password, invalid_authorization_specification
		return fmt.Errorf("postgres at %s refused the login: %s (SQLSTATE %s); set DATABASE_URL (-database-url) to a URL with a role and password it accepts, e.g. postgres://USER:PASSWORD@localhost:5432/sluice, or stop that server to use a private cluster under -data-dir",
			shown, pgErr.Message, pgErr.Code)
	default:
		return fmt.Errorf("postgres at %s answered but cannot be used: %s (SQLSTATE %s); set DATABASE_URL (-database-url) to a database sluiced may use, or stop that server to use a private cluster under -data-dir",
			shown, pgErr.Message, pgErr.Code)
	}
}

// redactedURL is url without a password, for messages.
func redactedURL(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return "(invalid url)"
	}
	return fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
}
