package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// SessionsConfig configures Sessions. The zero value of each field is its
// documented default.
type SessionsConfig struct {
	// TTL is the absolute lifetime of a session. Default 24h.
	TTL time.Duration
	// Idle ends a session not used for this long (a request or an open
	// stream is use): sliding expiry within TTL. Zero means no idle
	// expiry. Use is recorded in Postgres at most every TouchEvery, and an
	// instance trusts a cached answer for at most min(CacheTTL, TouchEvery)
	// (so use served from the cache is recorded too): a session is refused
	// between Idle-TouchEvery-min(CacheTTL, TouchEvery) and Idle after its
	// last use, and never while used more often than that.
	Idle time.Duration
	// CacheTTL bounds how long another instance may still accept a revoked
	// session. Default 2s.
	CacheTTL time.Duration
	// TouchEvery is how often use is recorded per session. Default 1m, or
	// Idle/4 if that is shorter.
	TouchEvery time.Duration
}

// Sessions creates sessions and resolves bearer tokens to principals, with
// a short-lived cache in front of Postgres, and tells streams when their
// session ends. It is safe for concurrent use.
type Sessions struct {
	rows sessionRows
	cfg  SessionsConfig
	// fresh is how long a cached answer is used: CacheTTL, or TouchEvery
	// if shorter, so that use served from the cache is still recorded in
	// time to keep the session from going idle.
	fresh time.Duration

	mu       sync.Mutex
	cache    map[string]cached // by token hash
	live     map[int64]liveAt  // Live answers, by session id
	watchers map[int64]map[*revokeHook]struct{}

	hits, misses atomic.Uint64 // token lookups answered by the cache, and by Postgres
}

// liveAt is a Live answer and when it was read from Postgres.
type liveAt struct {
	live    bool
	fetched time.Time
}

type cached struct {
	p       *authz.Principal
	fetched time.Time
}

const maxCached = 100_000

// NewSessions returns Sessions on store. A revoked session may still be
// accepted by another instance for up to cfg.CacheTTL; on the instance
// that revoked it, it ends at once.
func NewSessions(store *engine.Store, cfg SessionsConfig) *Sessions {
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 2 * time.Second
	}
	if cfg.Idle < 0 {
		cfg.Idle = 0
	}
	if cfg.TouchEvery <= 0 {
		cfg.TouchEvery = time.Minute
		if cfg.Idle > 0 && cfg.Idle/4 < cfg.TouchEvery {
			cfg.TouchEvery = cfg.Idle / 4
		}
	}
	fresh := cfg.CacheTTL
	if cfg.Idle > 0 {
		fresh = min(fresh, cfg.TouchEvery)
	}
	return &Sessions{
		rows:     sessionRows{store: store},
		cfg:      cfg,
		fresh:    fresh,
		cache:    make(map[string]cached),
		live:     make(map[int64]liveAt),
		watchers: make(map[int64]map[*revokeHook]struct{}),
	}
}

// Create opens a session for id and returns its token (shown to the client
// once; only its hash is stored) and when it expires.
func (s *Sessions) Create(ctx context.Context, id Identity) (token string, expiresAt time.Time, err error) {
	token, err = newToken()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("new token: %w", err)
	}
	serverData, err := json.Marshal(orEmpty(id.ServerData))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("server data: %w", err)
	}
	clientData, err := json.Marshal(orEmpty(id.ClientData))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("client data: %w", err)
	}
	sess, err := s.rows.CreateSession(ctx, Session{
		TokenHash:  hashToken(token),
		UserID:     id.ID,
		Roles:      normalizeRoles(id.Roles),
		ServerData: serverData,
		ClientData: clientData,
		ExpiresAt:  time.Now().Add(s.cfg.TTL),
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return token, sess.ExpiresAt, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// errNoSession answers Logout by a caller that has no session (a bearer
// JWT): there is nothing to revoke, and saying OK would let the client
// believe its token no longer works.
func errNoSession() error {
	return edge.Precondition("no session to log out: a bearer JWT cannot be revoked here; discard it")
}

// Principal returns the principal of a live session token (not revoked,
// expired or idle), or authz.ErrUnauthenticated. It records the use, which
// renews an idle timeout (never the absolute expiry).
func (s *Sessions) Principal(ctx context.Context, token string) (*authz.Principal, error) {
	hash := hashToken(token)
	key := string(hash)
	now := time.Now()
	s.mu.Lock()
	if c, ok := s.cache[key]; ok && now.Sub(c.fetched) < s.fresh && now.Before(c.p.ExpiresAt) {
		s.mu.Unlock()
		s.hits.Add(1)
		return c.p, nil
	}
	s.mu.Unlock()
	s.misses.Add(1)
	sess, err := s.rows.ActiveSession(ctx, hash, s.cfg.Idle, s.cfg.TouchEvery)
	if errors.Is(err, engine.ErrNotFound) {
		return nil, authz.ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	p := &authz.Principal{ID: sess.UserID, Roles: sess.Roles, SessionID: sess.ID, ExpiresAt: sess.ExpiresAt}
	if err := json.Unmarshal(sess.ServerData, &p.ServerData); err != nil {
		return nil, fmt.Errorf("session server data: %w", err)
	}
	if err := json.Unmarshal(sess.ClientData, &p.ClientData); err != nil {
		return nil, fmt.Errorf("session client data: %w", err)
	}
	s.mu.Lock()
	if len(s.cache) >= maxCached {
		clear(s.cache) // crude but bounded; the next calls refill it
	}
	s.cache[key] = cached{p: p, fetched: now}
	s.mu.Unlock()
	return p, nil
}

// Revoke revokes a session, drops it from this instance's cache and ends
// the streams watching it here.
func (s *Sessions) Revoke(ctx context.Context, id int64) error {
	if err := s.rows.RevokeSession(ctx, id); err != nil {
		return err
	}
	s.forget([]int64{id})
	return nil
}

// RevokeUser revokes every live session of userID and returns how many
// there were. Their streams end at once on this instance, and within the
// session check interval elsewhere; other instances stop accepting the
// tokens within CacheTTL.
func (s *Sessions) RevokeUser(ctx context.Context, userID string) (int, error) {
	ids, err := s.rows.RevokeUserSessions(ctx, userID)
	if err != nil {
		return 0, err
	}
	s.forget(ids)
	return len(ids), nil
}

// forget drops revoked sessions from the cache and ends their streams
// here.
func (s *Sessions) forget(ids []int64) {
	if len(ids) == 0 {
		return
	}
	gone := make(map[int64]bool, len(ids))
	for _, id := range ids {
		gone[id] = true
	}
	var hooks []*revokeHook
	s.mu.Lock()
	for k, c := range s.cache {
		if gone[c.p.SessionID] {
			delete(s.cache, k)
		}
	}
	for _, id := range ids {
		delete(s.live, id)
		for h := range s.watchers[id] {
			hooks = append(hooks, h)
		}
		delete(s.watchers, id)
	}
	s.mu.Unlock()
	// Outside the lock: a hook may take locks of its own (Streams).
	for _, h := range hooks {
		h.f()
	}
}

// revokeHook is a function OnRevoke runs; a pointer, so each registration
// is distinct.
type revokeHook struct{ f func() }

// OnRevoke runs f once, on the revoking goroutine, when session id is
// revoked on this instance, unless the returned stop was called first.
// Revocation elsewhere is seen by Live. f must not block.
func (s *Sessions) OnRevoke(id int64, f func()) (stop func()) {
	h := &revokeHook{f: f}
	s.mu.Lock()
	if s.watchers[id] == nil {
		s.watchers[id] = make(map[*revokeHook]struct{})
	}
	s.watchers[id][h] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers[id], h)
		if len(s.watchers[id]) == 0 {
			delete(s.watchers, id)
		}
	}
}

// Watch returns a channel closed when session id is revoked on this
// instance, and a function to stop watching. Revocation elsewhere is seen
// by Live.
func (s *Sessions) Watch(id int64) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	return ch, s.OnRevoke(id, func() { close(ch) })
}

// Live reports whether session id is still neither revoked, expired nor
// idle. Streams call it periodically, which records their use: an open
// stream keeps its session from going idle (and is not ended while its
// session is renewed). The answer is shared for CacheTTL (TouchEvery if
// shorter) by every stream of the session on this instance, so a client
// with many streams costs one query per CacheTTL, not one per stream;
// revocation on this instance is seen at once (Watch), elsewhere within
// CacheTTL of the check.
func (s *Sessions) Live(ctx context.Context, id int64) (bool, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.live[id]
	s.mu.Unlock()
	if ok && now.Sub(c.fetched) < s.fresh {
		return c.live, nil
	}
	live, err := s.rows.SessionActive(ctx, id, s.cfg.Idle, s.cfg.TouchEvery)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	if len(s.live) >= maxCached {
		clear(s.live)
	}
	s.live[id] = liveAt{live: live, fetched: now}
	s.mu.Unlock()
	return live, nil
}
