package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/sync/engine"
)

// Idle expiry of sessions (migration 002: sessions.last_seen_at).
//
// last_seen_at is updated only when it is older than the caller's touch
// interval, so an active session costs at most one write per interval; the
// idle check therefore errs on the side of keeping a session by up to that
// interval. Both use the database clock, so instances agree.

// ActiveSession returns the session with the given token hash if it is
// neither revoked nor expired and, when idle > 0, was seen within idle. It
// marks the session seen now if it was last seen more than touch ago. It
// returns engine.ErrNotFound if there is no such session.
func (s sessionRows) ActiveSession(ctx context.Context, hash []byte, idle, touch time.Duration) (Session, error) {
	var sess Session
	err := s.store.Pool().QueryRow(ctx, `
		WITH s AS (
			SELECT id, token_hash, user_id, roles, server_data, client_data, created_at, expires_at, last_seen_at
			FROM sessions
			WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
			  AND ($2::bigint = 0 OR last_seen_at > now() - make_interval(secs => $2::bigint / 1e6))
		), touched AS (
			UPDATE sessions SET last_seen_at = now()
			FROM s
			WHERE sessions.id = s.id AND s.last_seen_at <= now() - make_interval(secs => $3::bigint / 1e6)
		)
		SELECT id, token_hash, user_id, roles, server_data, client_data, created_at, expires_at FROM s`,
		hash, idle.Microseconds(), touch.Microseconds(),
	).Scan(&sess.ID, &sess.TokenHash, &sess.UserID, &sess.Roles, &sess.ServerData, &sess.ClientData, &sess.CreatedAt, &sess.ExpiresAt)
	if err != nil {
		return Session{}, fmt.Errorf("active session: %w", engine.DBError(err))
	}
	return sess, nil
}

// SessionActive reports whether the session with the given ID is neither
// revoked nor expired nor, when idle > 0, unseen for longer than idle. Like
// ActiveSession it marks the session seen (an open stream is use).
func (s sessionRows) SessionActive(ctx context.Context, id int64, idle, touch time.Duration) (bool, error) {
	var active bool
	err := s.store.Pool().QueryRow(ctx, `
		WITH s AS (
			SELECT id, last_seen_at
			FROM sessions
			WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()
			  AND ($2::bigint = 0 OR last_seen_at > now() - make_interval(secs => $2::bigint / 1e6))
		), touched AS (
			UPDATE sessions SET last_seen_at = now()
			FROM s
			WHERE sessions.id = s.id AND s.last_seen_at <= now() - make_interval(secs => $3::bigint / 1e6)
		)
		SELECT EXISTS (SELECT 1 FROM s)`,
		id, idle.Microseconds(), touch.Microseconds(),
	).Scan(&active)
	if err != nil {
		return false, fmt.Errorf("session active: %w", engine.DBError(err))
	}
	return active, nil
}

// RevokeUserSessions revokes every live session of userID and returns
// their IDs (none is not an error).
func (s sessionRows) RevokeUserSessions(ctx context.Context, userID string) ([]int64, error) {
	rows, err := s.store.Pool().Query(ctx, `
		UPDATE sessions SET revoked_at = now()
		WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
		RETURNING id`, userID)
	if err != nil {
		return nil, fmt.Errorf("revoke user sessions: %w", engine.DBError(err))
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("revoke user sessions: %w", engine.DBError(err))
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("revoke user sessions: %w", engine.DBError(err))
	}
	return ids, nil
}
