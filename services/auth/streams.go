package auth

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/edge"
)

// Streams bounds the life of server streams: each one ends when the server
// shuts down (edge.ErrShutdown, Unavailable: "resume") or when its
// principal's session is revoked, found dead in Postgres, or expires
// (authz.ErrUnauthenticated). Every streaming handler holds its stream
// through one Streams, so no stream outlives either.
type Streams struct {
	sessions *Sessions
	check    time.Duration
	log      *slog.Logger

	base     context.Context
	shutdown context.CancelFunc
}

// NewStreams returns a Streams that re-checks sessions every check (plus
// jitter); zero means 5s.
func NewStreams(sessions *Sessions, check time.Duration, log *slog.Logger) *Streams {
	if check <= 0 {
		check = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Streams{sessions: sessions, check: check, log: log}
	s.base, s.shutdown = context.WithCancel(context.Background())
	return s
}

// Shutdown ends every held stream with edge.ErrShutdown. Streams held later
// end at once the same way.
func (s *Streams) Shutdown() { s.shutdown() }

// Hold returns a context for a stream of the principal in ctx. It is
// cancelled, with the reason as its cause, when the stream must end; call
// release when the stream is done. Return Ended(ctx, err) from the handler
// so the client learns the reason.
func (s *Streams) Hold(ctx context.Context) (context.Context, func()) {
	p := authz.PrincipalFrom(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.base, func() { cancel(edge.ErrShutdown) })
	var unwatch func()
	done := make(chan struct{})
	if p != nil && !p.Service && (p.SessionID != 0 || !p.ExpiresAt.IsZero()) {
		var ended <-chan struct{}
		if p.SessionID != 0 {
			ended, unwatch = s.sessions.Watch(p.SessionID)
		}
		go s.watch(ctx, p, ended, done, cancel)
	}
	return ctx, func() {
		close(done)
		stop()
		if unwatch != nil {
			unwatch()
		}
		cancel(nil)
	}
}

// Ended returns the error a held stream ends with: the reason its context
// was cancelled by Hold, else err.
func Ended(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// watch cancels the stream when its session is revoked here, is found
// revoked in Postgres, or expires.
func (s *Streams) watch(ctx context.Context, p *authz.Principal, ended <-chan struct{}, done <-chan struct{}, cancel context.CancelCauseFunc) {
	// Streams opened together would check together; spread the checks.
	jitter := time.Duration(rand.Int64N(int64(s.check)))
	tick := time.NewTicker(s.check + jitter)
	defer tick.Stop()
	if p.SessionID == 0 {
		tick.Stop() // a JWT has no session to re-check; it ends at exp
	}
	var expire <-chan time.Time
	if !p.ExpiresAt.IsZero() {
		t := time.NewTimer(time.Until(p.ExpiresAt))
		defer t.Stop()
		expire = t.C
	}
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-ended:
			cancel(authz.ErrUnauthenticated)
			return
		case <-expire:
			cancel(authz.ErrUnauthenticated)
			return
		case <-tick.C:
			live, err := s.sessions.Live(ctx, p.SessionID)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("session check", "err", err)
				}
				continue
			}
			if !live {
				cancel(authz.ErrUnauthenticated)
				return
			}
		}
	}
}
