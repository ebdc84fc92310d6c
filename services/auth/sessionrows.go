package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/sync/engine"
)

// sessionRows is the SQL of the sessions table. Sessions are the auth
// package's concept; the engine's Store knows nothing of them.
type sessionRows struct{ store *engine.Store }

// Session is a login session. The token itself is never stored: TokenHash is
// its SHA-256.
type Session struct {
	ID         int64
	TokenHash  []byte
	UserID     string
	Roles      []string
	ServerData []byte // JSON object
	ClientData []byte // JSON object
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// CreateSession stores a new session and returns it with its ID and
// CreatedAt set.
func (s sessionRows) CreateSession(ctx context.Context, sess Session) (Session, error) {
	if sess.Roles == nil {
		sess.Roles = []string{}
	}
	if len(sess.ServerData) == 0 {
		sess.ServerData = []byte("{}")
	}
	if len(sess.ClientData) == 0 {
		sess.ClientData = []byte("{}")
	}
	err := s.store.Pool().QueryRow(ctx, `
		INSERT INTO sessions (token_hash, user_id, roles, server_data, client_data, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, created_at`,
		sess.TokenHash, sess.UserID, sess.Roles, sess.ServerData, sess.ClientData, sess.ExpiresAt,
	).Scan(&sess.ID, &sess.CreatedAt)
	if err != nil {
		return Session{}, fmt.Errorf("create session: %w", engine.DBError(err))
	}
	return sess, nil
}

// RevokeSession revokes the session with the given ID. Revoking a revoked or
// unknown session is not an error.
func (s sessionRows) RevokeSession(ctx context.Context, id int64) error {
	if _, err := s.store.Pool().Exec(ctx, `UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id); err != nil {
		return fmt.Errorf("revoke session: %w", engine.DBError(err))
	}
	return nil
}
