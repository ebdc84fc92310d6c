package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
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
	limits   StreamLimits
	log      *slog.Logger

	base     context.Context
	shutdown context.CancelFunc

	mu         sync.Mutex
	held       map[int64]*heldSession
	users      map[string]*userLoad // streams and targets per principal id
	perSession map[int64]int        // open streams per session id
	outage     engine.Outage        // session checks failing while Postgres is down
}

// StreamLimits bound the streams a user holds open on one instance. Zero
// fields take the defaults; a negative field is no limit. Service
// principals are not limited. The defaults leave room for clients that
// multiplex hundreds of streams over one session (a backend, a gateway,
// the load generators) while bounding what one login can pin in memory;
// a deployment that serves only browsers and apps can set them far lower
// (for example 32 and 128 streams).
type StreamLimits struct {
	// PerSession bounds the open streams of one session. Default 1024.
	PerSession int
	// PerPrincipal bounds the open streams of one user over all their
	// sessions. Default 4096.
	PerPrincipal int
	// TargetsPerPrincipal bounds the records and scopes one user follows
	// over all their open streams. Default 16384.
	TargetsPerPrincipal int
}

func (l StreamLimits) withDefaults() StreamLimits {
	def := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	return StreamLimits{
		PerSession:          def(l.PerSession, 1024),
		PerPrincipal:        def(l.PerPrincipal, 4096),
		TargetsPerPrincipal: def(l.TargetsPerPrincipal, 16384),
	}
}

// userLoad is what one principal holds open on this instance.
type userLoad struct{ streams, targets int }

// over reports whether n more would pass limit (negative: no limit).
func over(have, n, limit int) bool { return limit >= 0 && have+n > limit }

// heldSession is the streams of one session on this instance.
type heldSession struct {
	id      int64
	streams map[*heldStream]struct{}
	timer   *time.Timer // the next re-check
	unhook  func()      // stops the revocation hook
}

type heldStream struct{ cancel context.CancelCauseFunc }

// NewStreams returns a Streams that re-checks sessions every check (plus
// jitter; zero means 5s, and at most the sessions' TouchEvery when they
// have an idle timeout, so that an open stream's checks keep its session
// in use) and holds streams within limits.
func NewStreams(sessions *Sessions, check time.Duration, limits StreamLimits, log *slog.Logger) *Streams {
	if check <= 0 {
		check = 5 * time.Second
	}
	if sessions.cfg.Idle > 0 {
		check = min(check, sessions.cfg.TouchEvery)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Streams{sessions: sessions, check: check, limits: limits.withDefaults(), log: log,
		held: make(map[int64]*heldSession), users: make(map[string]*userLoad), perSession: make(map[int64]int)}
	s.base, s.shutdown = context.WithCancel(context.Background())
	return s
}

// Shutdown ends every held stream with edge.ErrShutdown. Streams held later
// end at once the same way.
func (s *Streams) Shutdown() { s.shutdown() }

// Hold returns a context for a stream of the principal in ctx that
// follows targets records and scopes. It is cancelled, with the reason as
// its cause, when the stream must end; call release when the stream is
// done. Return Ended(ctx, err) from the handler so the client learns the
// reason. Hold refuses, with resource_exhausted, a stream past the
// session's or the user's limits.
func (s *Streams) Hold(ctx context.Context, targets int) (_ context.Context, release func(), err error) {
	p := authz.PrincipalFrom(ctx)
	limited := p != nil && !p.Service
	if limited {
		if err := s.take(p, targets); err != nil {
			return nil, nil, err
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.base, func() { cancel(edge.ErrShutdown) })
	var expire *time.Timer
	var leave func()
	if limited {
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
		if limited {
			s.give(p, targets)
		}
		cancel(nil)
	}, nil
}

// take counts a stream of p with targets against the limits, or refuses.
func (s *Streams) take(p *authz.Principal, targets int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[p.ID]
	if u == nil {
		u = &userLoad{}
	}
	if p.SessionID != 0 && over(s.perSession[p.SessionID], 1, s.limits.PerSession) {
		return edge.Exhausted(fmt.Sprintf("too many open streams for this session (at most %d); close one first", s.limits.PerSession))
	}
	if over(u.streams, 1, s.limits.PerPrincipal) {
		return edge.Exhausted(fmt.Sprintf("too many open streams for this user (at most %d); close one first", s.limits.PerPrincipal))
	}
	if over(u.targets, targets, s.limits.TargetsPerPrincipal) {
		return edge.Exhausted(fmt.Sprintf("too many records and scopes followed by this user (at most %d over all streams); close a stream first", s.limits.TargetsPerPrincipal))
	}
	u.streams++
	u.targets += targets
	s.users[p.ID] = u
	if p.SessionID != 0 {
		s.perSession[p.SessionID]++
	}
	return nil
}

// give returns what take counted.
func (s *Streams) give(p *authz.Principal, targets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.SessionID != 0 {
		if s.perSession[p.SessionID]--; s.perSession[p.SessionID] <= 0 {
			delete(s.perSession, p.SessionID)
		}
	}
	u := s.users[p.ID]
	if u == nil {
		return
	}
	u.streams--
	u.targets -= targets
	if u.streams <= 0 {
		delete(s.users, p.ID)
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
