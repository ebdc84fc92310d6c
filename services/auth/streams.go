package auth

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	gosync "sync"
	"time"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync"
)

// Streams bounds the life of server streams: each one ends when the server
// shuts down (edge.ErrShutdown, Unavailable: "resume") or when its
// principal's session is revoked, found dead in Postgres, or expires
// (authz.ErrUnauthenticated). Every streaming handler holds its stream
// through one Streams, so no stream outlives either.
//
// A held stream costs no goroutine: shutdown, expiry and revocation on
// this instance cancel it through callbacks, and the streams of one session
// share one timer that re-checks the session in Postgres. It is safe for
// concurrent use.
type Streams struct {
	sessions *Sessions
	check    time.Duration
	log      *slog.Logger

	base     context.Context
	shutdown context.CancelFunc

	mu     gosync.Mutex
	held   map[int64]*heldSession
	outage sync.Outage // session checks failing while Postgres is down
}

// heldSession is the streams of one session on this instance.
type heldSession struct {
	id      int64
	streams map[*heldStream]struct{}
	timer   *time.Timer // the next re-check
	unhook  func()      // stops the revocation hook
}

type heldStream struct{ cancel context.CancelCauseFunc }

// NewStreams returns a Streams that re-checks sessions every check (plus
// jitter); zero means 5s.
func NewStreams(sessions *Sessions, check time.Duration, log *slog.Logger) *Streams {
	if check <= 0 {
		check = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Streams{sessions: sessions, check: check, log: log, held: make(map[int64]*heldSession)}
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
	var expire *time.Timer
	var leave func()
	if p != nil && !p.Service {
		if !p.ExpiresAt.IsZero() {
			expire = time.AfterFunc(time.Until(p.ExpiresAt), func() { cancel(authz.ErrUnauthenticated) })
		}
		if p.SessionID != 0 { // a JWT has no session to re-check; it ends at exp
			leave = s.join(p.SessionID, &heldStream{cancel: cancel})
		}
	}
	return ctx, func() {
		stop()
		if expire != nil {
			expire.Stop()
		}
		if leave != nil {
			leave()
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

// join adds a stream to its session's group, starting the group's re-check
// timer and revocation hook for the first one; the returned func leaves.
func (s *Streams) join(id int64, st *heldStream) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := s.held[id]
	if hs == nil {
		hs = &heldSession{id: id, streams: make(map[*heldStream]struct{})}
		s.held[id] = hs
		hs.unhook = s.sessions.OnRevoke(id, func() { s.end(hs) })
		hs.timer = time.AfterFunc(s.interval(), func() { s.recheck(hs) })
	}
	hs.streams[st] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(hs.streams, st)
		if len(hs.streams) == 0 && s.held[id] == hs {
			delete(s.held, id)
			hs.timer.Stop()
			hs.unhook()
		}
	}
}

// interval is the time to the next re-check: streams opened together would
// check together, so each wait is spread by up to one more interval.
func (s *Streams) interval() time.Duration {
	return s.check + time.Duration(rand.Int64N(int64(s.check)))
}

// end cancels every stream of hs: its session is over.
func (s *Streams) end(hs *heldSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range hs.streams {
		st.cancel(authz.ErrUnauthenticated)
	}
}

// recheck asks Postgres (through the Sessions cache) whether hs's session
// is still live, ends its streams if not, and waits for the next check.
func (s *Streams) recheck(hs *heldSession) {
	ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	live, err := s.sessions.Live(ctx, hs.id)
	cancel()
	switch {
	case err != nil:
		if s.base.Err() == nil {
			s.outage.Fail(s.log, "session check", err)
		}
	case !live:
		s.end(hs)
		return
	default:
		s.outage.OK(s.log, "session check")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[hs.id] == hs {
		hs.timer.Reset(s.interval())
	}
}
