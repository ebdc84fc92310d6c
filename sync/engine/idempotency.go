package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrIdempotencyMismatch means an idempotency key was used again for a
// different procedure or request.
var ErrIdempotencyMismatch = errors.New("idempotency key was already used for a different request")

// Idempotency identifies one client attempt at a mutating call.
type Idempotency struct {
	Principal   string
	Key         string
	Procedure   string
	RequestHash []byte
}

type idemKey struct{}

// WithIdempotency returns a context whose Store.Update records (or
// replays) the attempt identified by id.
func WithIdempotency(ctx context.Context, id Idempotency) context.Context {
	return context.WithValue(ctx, idemKey{}, id)
}

func idempotencyFrom(ctx context.Context) (Idempotency, bool) {
	id, ok := ctx.Value(idemKey{}).(Idempotency)
	return id, ok && id.Key != ""
}

// storedChange is a Change as kept for replay.
type storedChange struct {
	Key      string          `json:"key"`
	Scope    string          `json:"scope"`
	Version  int64           `json:"version"`
	Seq      int64           `json:"seq"`
	Deleted  bool            `json:"deleted,omitempty"`
	TypeName string          `json:"type"`
	Payload  json.RawMessage `json:"payload"`
	Actor    string          `json:"actor"`
	At       time.Time       `json:"at"`
}

// claim records the attempt in tx. It returns the original changes and
// true when the attempt was already committed (a replay), and
// ErrIdempotencyMismatch when the key was used for another request. A
// concurrent attempt with the same key waits here for the first to end.
func (t *Tx) claim(ctx context.Context, id Idempotency) ([]Change, bool, error) {
	tag, err := t.tx.Exec(ctx, `
		INSERT INTO idempotency (principal, key, procedure, request_hash)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, id.Principal, id.Key, id.Procedure, id.RequestHash)
	if err != nil {
		return nil, false, fmt.Errorf("claim idempotency key: %w", translate(err))
	}
	if tag.RowsAffected() == 1 {
		return nil, false, nil
	}
	var proc string
	var hash, raw []byte
	err = t.tx.QueryRow(ctx, `SELECT procedure, request_hash, changes FROM idempotency WHERE principal = $1 AND key = $2`,
		id.Principal, id.Key).Scan(&proc, &hash, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		// The first attempt rolled back after we waited: try again.
		return nil, false, fmt.Errorf("idempotency key released: %w", ErrRetry)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read idempotency key: %w", translate(err))
	}
	if proc != id.Procedure || !bytes.Equal(hash, id.RequestHash) {
		return nil, false, ErrIdempotencyMismatch
	}
	var stored []storedChange
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, false, fmt.Errorf("decode idempotent result: %w", err)
	}
	out := make([]Change, len(stored))
	for i, s := range stored {
		out[i] = Change{Key: s.Key, Scope: s.Scope, Version: s.Version, Seq: s.Seq, Deleted: s.Deleted,
			TypeName: s.TypeName, Payload: s.Payload, Actor: s.Actor, At: s.At}
	}
	return out, true, nil
}

// record returns the statement that stores the committed result of the
// attempt; Update sends it in one round trip with COMMIT.
func (t *Tx) record(id Idempotency) (string, []any, error) {
	stored := make([]storedChange, len(t.changes))
	for i, c := range t.changes {
		stored[i] = storedChange{Key: c.Key, Scope: c.Scope, Version: c.Version, Seq: c.Seq, Deleted: c.Deleted,
			TypeName: c.TypeName, Payload: c.Payload, Actor: c.Actor, At: c.At}
	}
	raw, err := json.Marshal(stored)
	if err != nil {
		return "", nil, fmt.Errorf("encode idempotent result: %w", err)
	}
	return `UPDATE idempotency SET changes = $3 WHERE principal = $1 AND key = $2`,
		[]any{id.Principal, id.Key, raw}, nil
}
