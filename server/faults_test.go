package server

// Fault injection. Each scenario runs real processes: a nats-server
// process (internal/testenv.NATSProc), Postgres (the shared test server, or
// a private devpg cluster where the scenario restarts it) and two sluiced
// instances in this process sharing both. Writers change their own
// `user/<id>` record and retry like a client (the same Idempotency-Key, the
// other instance, only on retryable codes); subscribers follow those
// records (record targets) and their scopes (scope targets) on both
// instances and resume like a client (any non-permanent ending, or three
// silent heartbeat intervals: reopen with the cursors held). After the
// fault the writers stop, every subscriber must reach the state in
// Postgres, and every stream is checked against the delivery guarantees
// of sync/doc.go (see faultSub.handle and faultEnv.check).
//
// The scenarios run one at a time (not t.Parallel): they measure delays
// and process-wide resources.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/devpg"
	"github.com/sluicehq/sluice/internal/testenv"
)

const (
	faultHeartbeat  = time.Second
	faultWriteEvery = 20 * time.Millisecond
	// faultConverge bounds the wait for every subscriber to reach the
	// state in Postgres after the writers stop.
	faultConverge = 10 * time.Second
	// faultSilence is when a client gives up on a silent stream: three
	// heartbeat intervals.
	faultSilence = 3 * faultHeartbeat
)

// faultWriterNames each write their own record. The standard streams
// follow the first three; dave's record (and scope) is followed only by
// the probes a scenario opens while its fault lasts, so that the Hub of
// each instance must join that scope during the fault.
var faultWriterNames = []string{"alice", "bob", "carol", "dave"}

// faultRetryable are the codes a client retries a write on.
func faultRetryable(c connect.Code) bool {
	switch c {
	case connect.CodeUnavailable, connect.CodeAborted, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted:
		return true
	}
	return false
}

// faultTransport reports whether err is the client's own report of a
// broken connection (reset, broken pipe, EOF mid-response, refused), not
// an answer of the server. connect-go classifies some of these as
// canceled (ECONNRESET, EPIPE: see isClientDisconnected in connect-go's
// error.go) or internal ("incomplete envelope") even though the caller
// cancelled nothing. A client retries them like unavailable.
func faultTransport(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// faultPermanent are the stream endings the Subscribe contract calls
// permanent; every other ending means "resume".
func faultPermanent(c connect.Code) bool {
	switch c {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeFailedPrecondition, connect.CodeUnimplemented,
		connect.CodeOutOfRange, connect.CodeAlreadyExists:
		return true
	}
	return false
}

// faultSleep waits d (a backoff or a pause, never a synchronization) unless ctx
// ends first; it reports whether d elapsed.
func faultSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// faultPoll calls cond every 20ms until it holds or timeout passes.
func faultPoll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Environment

type faultSetup struct {
	// dbURL is the database; empty means a fresh one on the test server.
	dbURL string
	// configure adjusts the config of instance i (0 or 1).
	configure func(i int, cfg *Config)
	// writerInst is the instance writer i starts on; nil alternates.
	writerInst func(i int) int
}

type faultEnv struct {
	t      *testing.T
	t0     time.Time
	nats   *testenv.NATSProc
	cfg    Config
	apps   []*testApp
	keys   []string // the writers' records, each its own scope
	tokens map[string]string

	writers []*faultWriter
	subs    []*faultSub

	stopW   chan struct{}
	wctx    context.Context
	wcancel context.CancelFunc
	wwg     sync.WaitGroup
	sctx    context.Context
	scancel context.CancelFunc
	swg     sync.WaitGroup
	stopped bool

	pgMu sync.Mutex // guards pg
	pg   *pgx.Conn
}

// newFaultEnv starts a nats-server process and two instances on it, logs
// the users in, makes them share an organization (so every user may read
// every profile) and writes each writer's record once.
func newFaultEnv(t *testing.T, setup faultSetup) *faultEnv {
	t.Helper()
	e := &faultEnv{t: t, t0: time.Now(), tokens: map[string]string{}}
	e.nats = testenv.StartNATSProc(t)
	cfg := baseConfig(t)
	if setup.dbURL != "" {
		cfg.DatabaseURL = setup.dbURL
	}
	cfg.NATSURL = e.nats.URL()
	cfg.Heartbeat = faultHeartbeat
	e.cfg = cfg
	for i := range 2 {
		c := cfg
		if setup.configure != nil {
			setup.configure(i, &c)
		}
		e.apps = append(e.apps, startApp(t, c))
	}
	clients := map[string]*client{}
	for _, name := range faultWriterNames {
		c := login(t, e.apps[0].url, name)
		clients[name] = c
		e.tokens[name] = c.token
	}
	shareOrg(t, e.apps[0].url, clients["alice"], "bob", "carol", "dave")

	e.wctx, e.wcancel = context.WithCancel(context.Background())
	e.sctx, e.scancel = context.WithCancel(context.Background())
	e.stopW = make(chan struct{})
	t.Cleanup(e.shutdown) // before the apps stop (cleanups run last first)

	for i, name := range faultWriterNames {
		inst := i % len(e.apps)
		if setup.writerInst != nil {
			inst = setup.writerInst(i)
		}
		w := newFaultWriter(e, name, inst)
		e.writers = append(e.writers, w)
		e.keys = append(e.keys, w.key)
	}
	// One write each before any stream opens: every record exists.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, w := range e.writers {
		if !w.write(ctx) {
			t.Fatalf("first write of %s failed: %v %v", w.name, w.bad, w.errs)
		}
	}
	return e
}

// at formats a time relative to the start of the scenario.
func (e *faultEnv) at(ts time.Time) string {
	if ts.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.3fs", ts.Sub(e.t0).Seconds())
}

func (e *faultEnv) logf(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("[%s] %s", e.at(time.Now()), fmt.Sprintf(format, args...))
}

// standardSubs adds, on each instance, a stream of record targets, a
// stream of scope targets and a stream of both (overlapping on one record)
// for alice's, bob's and carol's records, and two cycling streams (each
// leaves 0.75–2.25s after it synced and resumes on the other instance
// with its cursors).
func (e *faultEnv) standardSubs() {
	shared := e.keys[:3]
	for inst := range e.apps {
		e.addSub(faultSubSpec{inst: inst, user: "dave", recs: shared})
		e.addSub(faultSubSpec{inst: inst, user: "alice", scopes: shared})
		e.addSub(faultSubSpec{inst: inst, user: "bob", recs: shared[:2], scopes: shared[1:]})
	}
	e.addSub(faultSubSpec{inst: 0, user: "dave", recs: shared[:2], cycle: 1500 * time.Millisecond})
	e.addSub(faultSubSpec{inst: 1, user: "dave", scopes: shared[1:], cycle: 1500 * time.Millisecond})
}

// freshSubs adds n streams that leave 0.5–1.5 cycle after they synced
// and come back without their cursors, on alternating instances: each
// stream starts with a snapshot while the writes go on.
func (e *faultEnv) freshSubs(n int, cycle time.Duration) []*faultSub {
	shared := e.keys[:3]
	var out []*faultSub
	for i := range n {
		out = append(out, e.addSub(faultSubSpec{inst: i % len(e.apps), user: "carol", recs: shared[:1], scopes: shared, cycle: cycle, fresh: true}))
	}
	return out
}

// probe opens, on each instance, a new stream on dave's record (#0) or
// scope (#1), which no other stream follows: the Hub must join the scope
// now. The probes then run like every other stream.
func (e *faultEnv) probe() []*faultSub {
	probes := []*faultSub{
		e.addSub(faultSubSpec{inst: 0, user: "alice", recs: e.keys[3:4], probe: true}),
		e.addSub(faultSubSpec{inst: 1, user: "alice", scopes: e.keys[3:4], probe: true}),
	}
	for _, s := range probes {
		e.swg.Add(1)
		go func() {
			defer e.swg.Done()
			s.run(e.sctx)
		}()
	}
	return probes
}

// assertProbesSynced checks that each probe's first stream caught up
// within faultSilence, the time after which a client gives up on a
// silent stream.
func (e *faultEnv) assertProbesSynced(probes []*faultSub, what string) {
	e.t.Helper()
	for _, s := range probes {
		s.mu.Lock()
		first := *s.lives[0]
		var all []string
		for _, l := range s.lives {
			all = append(all, "["+l.String(e)+"]")
		}
		s.mu.Unlock()
		if first.synced.IsZero() || first.synced.Sub(first.start) > faultSilence {
			e.t.Errorf("%s: a stream opened on instance %d at %s %s did not catch up within %v (a client gives up then): %s; all its streams: %s",
				s.name, first.inst, e.at(first.start), what, faultSilence, first.String(e), strings.Join(all, " "))
		} else {
			e.t.Logf("%s: opened %s, synced after %v", s.name, what, first.synced.Sub(first.start).Round(time.Millisecond))
		}
	}
}

// start opens every stream, waits until each has caught up, then starts
// the writers.
func (e *faultEnv) start() {
	e.t.Helper()
	for _, s := range e.subs {
		e.swg.Add(1)
		go func() {
			defer e.swg.Done()
			s.run(e.sctx)
		}()
	}
	if !faultPoll(15*time.Second, func() bool {
		for _, s := range e.subs {
			if !s.hasSynced() {
				return false
			}
		}
		return true
	}) {
		e.t.Fatalf("streams not synced within 15s:\n%s", e.subReport())
	}
	for _, w := range e.writers {
		e.wwg.Add(1)
		go func() {
			defer e.wwg.Done()
			w.loop(e.wctx, e.stopW)
		}()
	}
	e.logf("%d writers and %d streams running", len(e.writers), len(e.subs))
}

// hold lets the writers and streams run for d: a load phase.
func (e *faultEnv) hold(d time.Duration) {
	time.Sleep(d)
}

// waitProgress waits until, after since, every writer acknowledged n
// writes and every subscriber received n record events (subs in skip
// excepted).
func (e *faultEnv) waitProgress(since time.Time, n int, what string, skip ...*faultSub) {
	e.t.Helper()
	dead := false
	ok := faultPoll(15*time.Second, func() bool {
		for _, w := range e.writers {
			w.mu.Lock()
			dead = dead || w.dead
			w.mu.Unlock()
		}
		if dead {
			return true // a writer gave up: report below
		}
		for _, w := range e.writers {
			if w.okSince(since) < n {
				return false
			}
		}
		for _, s := range e.subs {
			if !slices.Contains(skip, s) && s.deliveredBetween(since, time.Time{}) < n {
				return false
			}
		}
		return true
	})
	if !ok || dead {
		var b strings.Builder
		for _, w := range e.writers {
			fmt.Fprintf(&b, "  writer %s: %d writes acknowledged since %s; errors %s; last errors %q\n", w.name, w.okSince(since), e.at(since), faultCodes(w.codeCounts()), w.lastErrs())
		}
		for _, s := range e.subs {
			fmt.Fprintf(&b, "  %s: %d record events since %s\n", s.name, s.deliveredBetween(since, time.Time{}), e.at(since))
		}
		if dead {
			e.t.Errorf("a writer stopped %s after an error it may not retry (see the writer errors at the end):\n%s%s", what, b.String(), e.subReport())
			return
		}
		e.t.Errorf("no progress %s within 15s (want %d writes per writer and %d events per stream):\n%s%s", what, n, n, b.String(), e.subReport())
	}
}

// waitLive waits until every subscriber received n live record events.
func (e *faultEnv) waitLive(n int) {
	e.t.Helper()
	e.waitProgress(e.t0, n, "before the fault")
}

// stopWriting stops the writers between two writes (a write in flight is
// retried to completion), or cancels them after 20s.
func (e *faultEnv) stopWriting() {
	e.t.Helper()
	select {
	case <-e.stopW:
	default:
		close(e.stopW)
	}
	done := make(chan struct{})
	go func() { e.wwg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		e.t.Errorf("writers did not stop within 20s (a write kept failing): cancelling them")
		e.wcancel()
		<-done
	}
}

// stopSubs ends the streams.
func (e *faultEnv) stopSubs() {
	e.t.Helper()
	e.scancel()
	done := make(chan struct{})
	go func() { e.swg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		e.t.Errorf("subscribers did not stop within 10s of cancelling them")
	}
}

// shutdown stops every goroutine of the environment (also when the test
// failed early).
func (e *faultEnv) shutdown() {
	if e.stopped {
		return
	}
	e.stopped = true
	select {
	case <-e.stopW:
	default:
		close(e.stopW)
	}
	e.wcancel()
	e.scancel()
	done := make(chan struct{})
	go func() { e.wwg.Wait(); e.swg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		e.t.Errorf("fault environment: goroutines did not stop within 15s")
	}
	e.pgMu.Lock()
	if e.pg != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = e.pg.Close(ctx)
		cancel()
		e.pg = nil
	}
	e.pgMu.Unlock()
}

// faultPG is the state of one writer's record in Postgres: its version,
// and the seq of its scope (the record is its own scope).
type faultPG struct {
	version, seq int64
	avatar       string
}

// pgState reads the writers' records and scopes from Postgres.
func (e *faultEnv) pgState(ctx context.Context) (map[string]faultPG, error) {
	e.pgMu.Lock()
	defer e.pgMu.Unlock()
	if e.pg == nil || e.pg.IsClosed() {
		conn, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		e.pg = conn
	}
	rows, err := e.pg.Query(ctx, `
		SELECT r.key, r.version, s.seq, coalesce(r.payload->>'avatarUrl', r.payload->>'avatar_url', '')
		FROM records r JOIN scopes s ON s.scope = r.scope
		WHERE r.key = ANY($1)`, e.keys)
	if err != nil {
		_ = e.pg.Close(ctx)
		e.pg = nil
		return nil, err
	}
	out := map[string]faultPG{}
	for rows.Next() {
		var key string
		var st faultPG
		if err := rows.Scan(&key, &st.version, &st.seq, &st.avatar); err != nil {
			rows.Close()
			return nil, err
		}
		out[key] = st
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) != len(e.keys) {
		return nil, fmt.Errorf("found %d of the records %v", len(out), e.keys)
	}
	return out, nil
}

// unpublished counts changes not yet marked published.
func (e *faultEnv) unpublished(ctx context.Context) (int, error) {
	e.pgMu.Lock()
	defer e.pgMu.Unlock()
	if e.pg == nil || e.pg.IsClosed() {
		conn, err := pgx.Connect(ctx, e.cfg.DatabaseURL)
		if err != nil {
			return 0, err
		}
		e.pg = conn
	}
	var n int
	err := e.pg.QueryRow(ctx, `SELECT count(*) FROM changes WHERE NOT published`).Scan(&n)
	return n, err
}

// converge waits until every subscriber holds the state in Postgres.
func (e *faultEnv) converge() map[string]faultPG {
	e.t.Helper()
	start := time.Now()
	var st map[string]faultPG
	var lastErr error
	ok := faultPoll(faultConverge, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		cur, err := e.pgState(ctx)
		if err != nil {
			lastErr = err
			return false
		}
		st = cur
		for _, s := range e.subs {
			if len(s.lagging(cur)) > 0 {
				return false
			}
		}
		return true
	})
	if !ok {
		if st == nil {
			e.t.Fatalf("cannot read the state in Postgres: %v", lastErr)
		}
		var b strings.Builder
		for _, s := range e.subs {
			for _, l := range s.lagging(st) {
				fmt.Fprintf(&b, "  %s: %s\n", s.name, l)
			}
		}
		e.t.Errorf("streams did not reach the Postgres state within %v after the writers stopped:\n%s%s", faultConverge, b.String(), e.subReport())
		return st
	}
	e.logf("every stream at the Postgres state %v after the writers stopped", time.Since(start).Round(time.Millisecond))
	return st
}

// finish stops the writers, waits for the streams to reach the Postgres
// state, stops them and checks every writer and stream.
func (e *faultEnv) finish() map[string]faultPG {
	e.t.Helper()
	e.stopWriting()
	e.converge()
	e.stopSubs()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	final, err := e.pgState(ctx)
	if err != nil {
		e.t.Fatalf("read final state: %v", err)
	}
	e.check(final)
	e.t.Logf("summary:\n%s%s", e.writerReport(final), e.subReport())
	return final
}

// check applies the guarantees to every writer and stream.
func (e *faultEnv) check(final map[string]faultPG) {
	e.t.Helper()
	for _, key := range e.keys {
		if final[key].avatar == "" {
			e.t.Errorf("no avatarUrl in the Postgres payload of %s: the payload check compares nothing", key)
		}
	}
	for _, w := range e.writers {
		w.mu.Lock()
		for _, b := range w.bad {
			e.t.Errorf("writer %s: %s", w.name, b)
		}
		if !w.abandoned && w.version != final[w.key].version {
			e.t.Errorf("writer %s: last acknowledged version %d, Postgres has %s at version %d", w.name, w.version, w.key, final[w.key].version)
		}
		w.mu.Unlock()
	}
	for _, s := range e.subs {
		s.mu.Lock()
		for i, b := range s.bad {
			if i == 20 {
				e.t.Errorf("%s: ... %d more violations", s.name, len(s.bad)-20)
				break
			}
			e.t.Errorf("%s: %s", s.name, b)
		}
		s.mu.Unlock()
		for _, l := range s.lagging(final) {
			e.t.Errorf("%s: final state differs from Postgres: %s", s.name, l)
		}
		for key, got := range s.avatars() {
			if want := final[key].avatar; got != want {
				e.t.Errorf("%s: final payload of %s has avatar %q, Postgres has %q", s.name, key, got, want)
			}
		}
	}
}

// assertStayedOpen checks that no stream ended (NATS faults must not end
// streams: docs/ARCHITECTURE.md, Faults).
func (e *faultEnv) assertStayedOpen(what string) {
	e.t.Helper()
	for _, s := range e.subs {
		if s.cycle > 0 || s.probe {
			continue // cyclers leave by design; probes: assertProbesSynced
		}
		s.mu.Lock()
		n := len(s.lives)
		var ends []string
		for _, l := range s.lives {
			if l.why != "test over" {
				ends = append(ends, l.String(e))
			}
		}
		s.mu.Unlock()
		if n != 1 {
			e.t.Errorf("%s: stream did not stay open %s: %d streams opened: %s", s.name, what, n, strings.Join(ends, "; "))
		}
	}
}

// assertDeliveredDuring checks that every subscriber (except skip)
// received record events in [from, to).
func (e *faultEnv) assertDeliveredDuring(from, to time.Time, what string, skip ...*faultSub) {
	e.t.Helper()
	for _, s := range e.subs {
		if slices.Contains(skip, s) || s.probe {
			continue // probes are checked by assertProbesSynced
		}
		if n := s.deliveredBetween(from, to); n == 0 {
			e.t.Errorf("%s: no change delivered between %s and %s (%s): deliveries stopped during the fault, want them to go on",
				s.name, e.at(from), e.at(to), what)
		} else {
			e.t.Logf("%s: %d changes delivered between %s and %s (%s)", s.name, n, e.at(from), e.at(to), what)
		}
	}
}

// assertEndedAndResumed checks the streams open on instance inst at time
// at: each must have ended (with code want, unless want is nil) and
// resumed on another instance.
func (e *faultEnv) assertEndedAndResumed(inst int, at time.Time, want *connect.Code) {
	e.t.Helper()
	checked := 0
	for _, s := range e.subs {
		s.mu.Lock()
		for i, l := range s.lives {
			if l.inst != inst || l.start.After(at) || (!l.end.IsZero() && l.end.Before(at)) {
				continue
			}
			checked++
			switch {
			case l.end.IsZero() || l.why == "test over":
				e.t.Errorf("%s: stream %d on instance %d (opened %s) was still open when the test ended, after the instance went away at %s",
					s.name, i, inst, e.at(l.start), e.at(at))
			case l.why == "cycle":
				// The client left on its own just then.
			case want != nil && l.code != *want:
				e.t.Errorf("%s: stream %d on instance %d ended %s with %s (%v), want %s", s.name, i, inst, e.at(l.end), faultCodeName(l.code), l.err, *want)
			}
			resumed := false
			for _, n := range s.lives[i+1:] {
				if n.inst != inst && !n.synced.IsZero() {
					resumed = true
					break
				}
			}
			if !resumed {
				e.t.Errorf("%s: stream %d on instance %d ended %s (%v) and was not resumed on another instance", s.name, i, inst, e.at(l.end), l.err)
			}
		}
		s.mu.Unlock()
	}
	if checked == 0 {
		e.t.Errorf("no stream was open on instance %d at %s: the scenario tested nothing", inst, e.at(at))
	}
}

func (e *faultEnv) writerCodes() map[string]int {
	out := map[string]int{}
	for _, w := range e.writers {
		for c, n := range w.codeCounts() {
			out[c] += n
		}
	}
	return out
}

func (e *faultEnv) writerReport(final map[string]faultPG) string {
	var b strings.Builder
	for _, w := range e.writers {
		w.mu.Lock()
		fmt.Fprintf(&b, "  writer %s: %d writes acknowledged, version %d (Postgres %d), errors %v, first errors %q\n",
			w.name, w.ok, w.version, final[w.key].version, faultCodes(w.codes), w.errs)
		w.mu.Unlock()
	}
	return b.String()
}

func (e *faultEnv) subReport() string {
	var b strings.Builder
	for _, s := range e.subs {
		s.mu.Lock()
		fmt.Fprintf(&b, "  %s: cursors %v, %d record events (%d coalesced, %d resets), streams:", s.name, s.cursorString(), len(s.got), s.coalesced, s.resets)
		for _, l := range s.lives {
			fmt.Fprintf(&b, " [%s]", l.String(e))
		}
		b.WriteString("\n")
		s.mu.Unlock()
	}
	return b.String()
}

func faultCodes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("%s×%d", c, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func faultCodeName(c connect.Code) string {
	if c == 0 {
		return "ok"
	}
	return c.String()
}

// ---------------------------------------------------------------------------
// Writers

// faultWriter changes its own record `user/<name>` every faultWriteEvery.
type faultWriter struct {
	e     *faultEnv
	name  string
	key   string
	token string
	users []userv1connect.UserServiceClient // one per instance

	mu        sync.Mutex
	inst      int
	n         int   // logical writes begun
	version   int64 // last version acknowledged
	ok        int
	okAt      []time.Time
	codes     map[string]int // error code (or "code (transport)") -> count
	errs      []string       // the first few errors, for the log
	last      []string       // the last few errors
	bad       []string
	abandoned bool // a write was given up: its outcome is unknown
	dead      bool // stopped after a violation
}

func newFaultWriter(e *faultEnv, name string, inst int) *faultWriter {
	w := &faultWriter{e: e, name: name, key: "user/" + name, token: e.tokens[name], inst: inst, codes: map[string]int{}}
	for _, a := range e.apps {
		w.users = append(w.users, userv1connect.NewUserServiceClient(h2c(), a.url, connect.WithInterceptors(bearerInterceptor{token: &w.token})))
	}
	return w
}

// loop writes until stop (between two writes) or ctx ends.
func (w *faultWriter) loop(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(faultWriteEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !w.write(ctx) {
			return
		}
	}
}

// write makes one logical write, retrying it with the same
// Idempotency-Key (on the other instance) after a retryable error until it
// succeeds or ctx ends. Any other error is a violation.
func (w *faultWriter) write(ctx context.Context) bool {
	w.mu.Lock()
	w.n++
	n := w.n
	w.mu.Unlock()
	key := fmt.Sprintf("fault-%s-%d", w.name, n)
	avatar := fmt.Sprintf("https://example.com/%s/%d.png", w.name, n)
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		w.mu.Lock()
		inst := w.inst
		w.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req := connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: avatar})
		req.Header().Set("Idempotency-Key", key)
		res, err := w.users[inst].SetAvatarUrl(actx, req)
		cancel()
		now := time.Now()
		w.mu.Lock()
		if err == nil {
			v := res.Msg.GetWritten().GetVersion()
			if v != w.version+1 {
				w.bad = append(w.bad, fmt.Sprintf("write %d (Idempotency-Key %s, attempt %d, instance %d) acknowledged version %d after version %d: want exactly one new version per logical write",
					n, key, attempt, inst, v, w.version))
			}
			if got := res.Msg.GetUser().GetAvatarUrl(); got != avatar {
				w.bad = append(w.bad, fmt.Sprintf("write %d (Idempotency-Key %s) answered avatar %q, want %q", n, key, got, avatar))
			}
			w.version = max(w.version, v)
			w.ok++
			w.okAt = append(w.okAt, now)
			w.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			w.abandoned = true
			w.mu.Unlock()
			return false
		}
		code := connect.CodeOf(err)
		label := code.String()
		retry := faultRetryable(code)
		if !retry && faultTransport(err) {
			// The connection broke: a client retries (see faultTransport).
			label += " (transport)"
			retry = true
		}
		w.codes[label]++
		msg := fmt.Sprintf("%s attempt %d on instance %d: %s: %v", w.e.at(now), attempt, inst, label, err)
		if len(w.errs) < 3 {
			w.errs = append(w.errs, msg)
		}
		w.last = append(w.last, msg)
		if len(w.last) > 3 {
			w.last = w.last[1:]
		}
		if !retry {
			w.bad = append(w.bad, fmt.Sprintf("write %d (Idempotency-Key %s) attempt %d on instance %d at %s failed with %s, which is not retryable: %v",
				n, key, attempt, inst, w.e.at(now), code, err))
			w.abandoned, w.dead = true, true
			w.mu.Unlock()
			return false
		}
		w.inst = (inst + 1) % len(w.users) // fail over
		w.mu.Unlock()
		if !faultSleep(ctx, backoff) {
			w.mu.Lock()
			w.abandoned = true
			w.mu.Unlock()
			return false
		}
		backoff = min(2*backoff, 400*time.Millisecond)
	}
}

func (w *faultWriter) okSince(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, _ := slices.BinarySearchFunc(w.okAt, t, func(a, b time.Time) int { return a.Compare(b) })
	return len(w.okAt) - i
}

func (w *faultWriter) codeCounts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.codes))
	for c, n := range w.codes {
		out[c] = n
	}
	return out
}

func (w *faultWriter) lastErrs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.last)
}

// ---------------------------------------------------------------------------
// Subscribers

// faultSub is one client stream that resumes like a real client. It
// follows records (record targets; cursor: the version held) and scopes
// (scope targets; cursor: the last seq seen), or both.
type faultSub struct {
	e      *faultEnv
	name   string
	recs   []string
	scopes []string
	token  string
	syncs  []syncv1connect.SyncServiceClient // one per instance
	// cycle, when set, ends each stream 0.5–1.5 times that after it
	// synced (the client goes away and comes back).
	cycle time.Duration
	probe bool
	fresh bool

	pauseReq chan time.Duration
	paused   atomic.Bool

	mu        sync.Mutex
	inst      int
	version   map[string]int64 // record key -> version held
	seq       map[string]int64 // scope -> last seq
	avatar    map[string]string
	lives     []*faultLife
	got       []time.Time // receive time of each record event
	coalesced int
	resets    int
	bad       []string
	pauses    [][2]time.Time
	stopped   bool // ended permanently
}

// faultLife is one stream: from opening to its end.
type faultLife struct {
	inst   int
	start  time.Time
	synced time.Time
	end    time.Time
	events int
	code   connect.Code // 0: ended without error
	err    error
	why    string           // who ended it: "server", "silent", "cycle", "open", "test over"
	from   map[string]int64 // scope cursors sent when it opened
}

func (l *faultLife) String(e *faultEnv) string {
	end := "open"
	if !l.end.IsZero() {
		end = fmt.Sprintf("ended %s by %s: %s", e.at(l.end), l.why, faultCodeName(l.code))
		if l.err != nil && l.why != "test over" && l.why != "cycle" {
			end += fmt.Sprintf(" (%v)", l.err)
		}
	}
	return fmt.Sprintf("#%d %s..synced %s, %d events, %s", l.inst, e.at(l.start), e.at(l.synced), l.events, end)
}

type faultSubSpec struct {
	inst   int    // the instance of the first stream
	user   string // who subscribes
	recs   []string
	scopes []string
	// slow reads through a connection with a small HTTP/2 receive window,
	// so that when it stops reading the server's writes stop after a few
	// KB, as for a client on a slow network.
	slow  bool
	cycle time.Duration
	probe bool // opened during a fault (see faultEnv.probe)
	// fresh drops the cursors before each stream: every stream starts
	// with a snapshot (a client that lost its state, a new page).
	fresh bool
}

// addSub adds a subscriber.
func (e *faultEnv) addSub(spec faultSubSpec) *faultSub {
	s := &faultSub{
		e: e, recs: slices.Clone(spec.recs), scopes: slices.Clone(spec.scopes), token: e.tokens[spec.user], inst: spec.inst, cycle: spec.cycle,
		version:  map[string]int64{},
		seq:      map[string]int64{},
		avatar:   map[string]string{},
		pauseReq: make(chan time.Duration, 1),
	}
	short := func(keys []string) string {
		var out []string
		for _, k := range keys {
			out = append(out, strings.TrimPrefix(k, "user/"))
		}
		return strings.Join(out, ",")
	}
	var what []string
	if len(s.recs) > 0 {
		what = append(what, "records "+short(s.recs))
	}
	if len(s.scopes) > 0 {
		what = append(what, "scopes "+short(s.scopes))
	}
	s.name = fmt.Sprintf("stream(%s; %s; from #%d)", spec.user, strings.Join(what, "; "), spec.inst)
	if spec.slow {
		s.name = "slow " + s.name
	}
	if spec.cycle > 0 {
		s.name = "cycling " + s.name
	}
	if spec.probe {
		s.name = "probe " + s.name
		s.probe = true
	}
	if spec.fresh {
		s.name = "fresh " + s.name
		s.fresh = true
	}
	for _, k := range s.recs {
		s.version[k] = 0
	}
	for _, sc := range s.scopes {
		s.seq[sc] = 0
	}
	for _, a := range e.apps {
		s.syncs = append(s.syncs, syncv1connect.NewSyncServiceClient(faultHTTPClient(spec.slow), a.url, connect.WithInterceptors(bearerInterceptor{token: &s.token})))
	}
	e.subs = append(e.subs, s)
	return s
}

func faultHTTPClient(slow bool) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	if slow {
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: 4 << 10, MaxReceiveBufferPerConnection: 64 << 10}
	}
	return &http.Client{Transport: tr}
}

// pause makes the subscriber stop reading its stream for d, starting with
// the next event.
func (s *faultSub) pause(d time.Duration) { s.pauseReq <- d }

// run opens the stream again after every ending that is not permanent,
// alternating instances, with a short backoff.
func (s *faultSub) run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for {
		synced := s.live(ctx)
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if ctx.Err() != nil || stopped {
			return
		}
		if synced {
			backoff = 50 * time.Millisecond
		} else {
			backoff = min(2*backoff, 500*time.Millisecond)
		}
		if !faultSleep(ctx, backoff) {
			return
		}
		s.mu.Lock()
		s.inst = (s.inst + 1) % len(s.syncs)
		s.mu.Unlock()
	}
}

// live runs one stream until it ends and reports whether it got as far as
// the SyncedEvent.
func (s *faultSub) live(ctx context.Context) bool {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	if s.fresh {
		for k := range s.version {
			s.version[k] = 0
		}
		for sc := range s.seq {
			s.seq[sc] = 0
		}
	}
	life := &faultLife{inst: s.inst, start: time.Now(), from: maps.Clone(s.seq)}
	s.lives = append(s.lives, life)
	req := &syncv1.SubscribeRequest{}
	for _, k := range s.recs {
		req.Records = append(req.Records, &syncv1.RecordTarget{Key: k, Version: s.version[k]})
	}
	for _, sc := range s.scopes {
		req.Scopes = append(req.Scopes, &syncv1.ScopeTarget{Scope: sc, AfterSeq: s.seq[sc]})
	}
	inst := s.inst
	s.mu.Unlock()

	var last atomic.Int64   // unix nanos of the last message
	var synced atomic.Int64 // unix nanos of the SyncedEvent
	last.Store(time.Now().UnixNano())
	var why atomic.Value
	why.Store("server")
	watchdog := make(chan struct{})
	stay := time.Duration(0)
	if s.cycle > 0 {
		stay = s.cycle/2 + rand.N(s.cycle)
	}
	go func() {
		defer close(watchdog)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				if at := synced.Load(); stay > 0 && at != 0 && time.Since(time.Unix(0, at)) > stay {
					why.Store("cycle")
					cancel()
					return
				}
				if s.paused.Load() {
					continue
				}
				if time.Since(time.Unix(0, last.Load())) > faultSilence {
					why.Store("silent")
					cancel()
					return
				}
			}
		}
	}()

	stream, err := s.syncs[inst].Subscribe(lctx, connect.NewRequest(req))
	if err == nil {
		for {
			select {
			case d := <-s.pauseReq:
				s.paused.Store(true)
				from := time.Now()
				faultSleep(lctx, d)
				s.mu.Lock()
				s.pauses = append(s.pauses, [2]time.Time{from, time.Now()})
				s.mu.Unlock()
				last.Store(time.Now().UnixNano())
				s.paused.Store(false)
			default:
			}
			if !stream.Receive() {
				break
			}
			now := time.Now().UnixNano()
			last.Store(now)
			if stream.Msg().GetSynced() != nil && synced.Load() == 0 {
				synced.Store(now)
			}
			s.handle(life, stream.Msg())
		}
		err = stream.Err()
		cancel()
		_ = stream.Close()
	}
	cancel()
	<-watchdog
	if err != nil && stream == nil {
		why.CompareAndSwap("server", "open") // the call failed, not the watchdog
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	life.end = time.Now()
	life.err = err
	if err != nil {
		life.code = connect.CodeOf(err)
	}
	life.why = why.Load().(string)
	if ctx.Err() != nil {
		life.why = "test over"
		return !life.synced.IsZero()
	}
	if life.why == "server" || life.why == "open" {
		if err == nil {
			// Not in the contract: a stream has no normal end. A client
			// resumes anyway; note it.
			s.e.t.Logf("%s: stream on instance %d ended without an error at %s", s.name, inst, s.e.at(life.end))
		} else if faultPermanent(life.code) {
			s.bad = append(s.bad, fmt.Sprintf("stream on instance %d ended at %s with the permanent code %s: %v", inst, s.e.at(life.end), life.code, err))
			s.stopped = true
		}
	}
	return !life.synced.IsZero()
}

// handle checks one event against the guarantees and moves the cursors.
// Caller does not hold mu.
func (s *faultSub) handle(life *faultLife, m *syncv1.SubscribeResponse) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	where := func() string {
		return fmt.Sprintf("stream %d on instance %d at %s", len(s.lives)-1, life.inst, s.e.at(now))
	}
	// step checks one cursor: val must be cur+1, unless the event is
	// coalesced or a snapshot for a cursor at 0 (a first snapshot, or the
	// snapshot after a reset); never cur or below.
	step := func(cursors map[string]int64, id, target, unit string, val int64, snapshot, coalesced bool) {
		cur := cursors[id]
		flags := fmt.Sprintf("snapshot=%v coalesced=%v", snapshot, coalesced)
		switch {
		case val <= cur:
			s.bad = append(s.bad, fmt.Sprintf("%s: %s target %s: %s %d delivered after %d (%s): delivered twice or out of order",
				where(), target, id, unit, val, cur, flags))
		case val != cur+1 && !coalesced && !(snapshot && cur == 0):
			s.bad = append(s.bad, fmt.Sprintf("%s: %s target %s: %s %d delivered after %d (%s): %d skipped without being marked coalesced",
				where(), target, id, unit, val, cur, flags, val-cur-1))
		}
		if val > cur {
			cursors[id] = val
		}
	}
	switch ev := m.GetEvent().(type) {
	case *syncv1.SubscribeResponse_Record:
		life.events++
		r := ev.Record.GetRecord()
		coalesced, snapshot := ev.Record.GetCoalesced(), ev.Record.GetSnapshot()
		_, isRec := s.version[r.GetKey()]
		_, isScope := s.seq[r.GetScope()]
		if isRec {
			step(s.version, r.GetKey(), "record", "version", r.GetVersion(), snapshot, coalesced)
		}
		if isScope {
			step(s.seq, r.GetScope(), "scope", "seq", r.GetSeq(), snapshot, coalesced)
		}
		if !isRec && !isScope {
			s.bad = append(s.bad, fmt.Sprintf("%s: event for %s (scope %s), which is not a target", where(), r.GetKey(), r.GetScope()))
			return
		}
		u := &userv1.User{}
		if err := r.GetPayload().UnmarshalTo(u); err != nil {
			s.bad = append(s.bad, fmt.Sprintf("%s: payload of %s v%d: %v", where(), r.GetKey(), r.GetVersion(), err))
		} else {
			s.avatar[r.GetKey()] = u.GetAvatarUrl()
		}
		s.got = append(s.got, now)
		if coalesced {
			s.coalesced++
		}
	case *syncv1.SubscribeResponse_Synced:
		life.synced = now
		for _, sc := range ev.Synced.GetScopes() {
			cur, ok := s.seq[sc.GetScope()]
			switch {
			case !ok:
				s.bad = append(s.bad, fmt.Sprintf("%s: SyncedEvent names %q, which is not a scope target", where(), sc.GetScope()))
			case sc.GetAfterSeq() != cur:
				// Each scope here holds exactly one record, never deleted:
				// the catch-up (snapshot or change list) must end with the
				// change at the scope's seq.
				kind := "change list"
				if life.from[sc.GetScope()] == 0 {
					kind = "snapshot"
				}
				s.bad = append(s.bad, fmt.Sprintf("%s: the catch-up of scope %s (opened with after_seq %d: a %s) ended with a SyncedEvent at seq %d, "+
					"but the last change it delivered is seq %d: the record committed at or before seq %d (the scope's only record) was not sent before SyncedEvent",
					where(), sc.GetScope(), life.from[sc.GetScope()], kind, sc.GetAfterSeq(), cur, sc.GetAfterSeq()))
				s.seq[sc.GetScope()] = max(cur, sc.GetAfterSeq())
			}
		}
	case *syncv1.SubscribeResponse_Reset_:
		s.resets++
		if _, ok := s.seq[ev.Reset_.GetScope()]; ok {
			s.seq[ev.Reset_.GetScope()] = 0 // a snapshot follows
		} else {
			s.bad = append(s.bad, fmt.Sprintf("%s: reset of %q, which is not a scope target", where(), ev.Reset_.GetScope()))
		}
	case *syncv1.SubscribeResponse_Heartbeat, *syncv1.SubscribeResponse_Ephemeral:
	default:
		s.bad = append(s.bad, fmt.Sprintf("%s: unexpected event %v", where(), m))
	}
}

func (s *faultSub) hasSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lives {
		if !l.synced.IsZero() {
			return true
		}
	}
	return false
}

// deliveredBetween counts record events received in [from, to); a zero to
// means now.
func (s *faultSub) deliveredBetween(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmp := func(a, b time.Time) int { return a.Compare(b) }
	i, _ := slices.BinarySearchFunc(s.got, from, cmp)
	j := len(s.got)
	if !to.IsZero() {
		j, _ = slices.BinarySearchFunc(s.got, to, cmp)
	}
	return max(0, j-i)
}

// lagging lists where the subscriber's cursors differ from st.
func (s *faultSub) lagging(st map[string]faultPG) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range s.recs {
		if got, want := s.version[k], st[k].version; got != want {
			out = append(out, fmt.Sprintf("record %s at version %d, Postgres at %d", k, got, want))
		}
	}
	for _, sc := range s.scopes {
		if got, want := s.seq[sc], st[sc].seq; got != want {
			out = append(out, fmt.Sprintf("scope %s at seq %d, Postgres at %d", sc, got, want))
		}
	}
	return out
}

// avatars returns the last payload received per record key.
func (s *faultSub) avatars() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.avatar)
}

// cursorString renders the cursors; caller holds mu.
func (s *faultSub) cursorString() string {
	var parts []string
	for _, k := range s.recs {
		parts = append(parts, fmt.Sprintf("%s=v%d", k, s.version[k]))
	}
	for _, sc := range s.scopes {
		parts = append(parts, fmt.Sprintf("%s=s%d", sc, s.seq[sc]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// ---------------------------------------------------------------------------
// Faults

// faultKill makes an instance vanish as a killed process would: its
// connections (HTTP and NATS) are cut at once and nothing more is
// answered; nothing is drained or flushed. What it owns is released when
// the test ends.
func faultKill(t *testing.T, a *testApp) {
	t.Helper()
	a.stopOnce.Do(func() {
		a.httpMu.Lock()
		srv, h2s := a.http, a.h2
		a.httpMu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
		if h2s != nil {
			h2s.Close() // the h2c connections, which srv does not track
		}
		a.nc.Close()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = a.Shutdown(ctx) // errors expected: it was killed
			select {
			case <-a.done:
			case <-ctx.Done():
				t.Errorf("killed instance: serve did not return")
			}
		})
	})
}

// faultCluster starts a private Postgres cluster for the test, in a
// directory the server user can reach when the tests run as root.
func faultCluster(t *testing.T) *devpg.Cluster {
	t.Helper()
	if _, err := devpg.FindBinDir(); err != nil {
		t.Fatalf("the Postgres restart scenario needs the PostgreSQL server binaries: %v", err)
	}
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("chmod %s: %v", d, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := devpg.Start(ctx, filepath.Join(tmp, "pg"), testLogger(t))
	if err != nil {
		t.Fatalf("private postgres: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop private postgres: %v", err)
		}
	})
	return c
}

// faultDatabase creates database name on the cluster and returns its URL.
func faultDatabase(t *testing.T, c *devpg.Cluster, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatalf("connect to private postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	u, err := url.Parse(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// ---------------------------------------------------------------------------
// Scenarios

// NATS is killed (kill -9) while writes go on and restarted on the same
// port 4s later. Streams stay open and keep receiving changes while NATS
// is down (followed from Postgres); streams that leave come back; a new
// stream on a scope the instance does not follow yet catches up; writes
// never fail.
func TestFaultNATSKill(t *testing.T) {
	e := newFaultEnv(t, faultSetup{})
	e.standardSubs()
	e.start()
	e.waitLive(5)

	killed := time.Now()
	e.nats.Kill()
	e.logf("nats-server killed (SIGKILL)")
	probes := e.probe()
	e.hold(4 * time.Second)
	restarted := time.Now()
	e.nats.Start()
	e.logf("nats-server restarted on the same port")
	e.waitProgress(time.Now(), 10, "after NATS restarted")

	e.finish()
	e.assertDeliveredDuring(killed.Add(500*time.Millisecond), restarted, "while NATS was down")
	e.assertStayedOpen("while NATS was killed and restarted")
	e.assertProbesSynced(probes, "while NATS was down")
	if codes := e.writerCodes(); len(codes) > 0 {
		t.Errorf("writes failed while NATS was down (%s): writes do not depend on NATS", faultCodes(codes))
	}
}

// NATS is stopped (SIGSTOP: connections open, nothing answered) for 4s,
// then continued. The Hub notices within about 2s and serves the streams
// from Postgres meanwhile: deliveries go on during the stall, and a new
// stream on a scope the instance does not follow yet catches up.
func TestFaultNATSStall(t *testing.T) {
	e := newFaultEnv(t, faultSetup{})
	e.standardSubs()
	e.start()
	e.waitLive(5)

	stalled := time.Now()
	e.nats.Pause()
	e.logf("nats-server stopped (SIGSTOP)")
	probes := e.probe()
	e.hold(4 * time.Second)
	resumed := time.Now()
	e.nats.Resume()
	e.logf("nats-server continued (SIGCONT)")
	e.waitProgress(time.Now(), 10, "after NATS continued")

	e.finish()
	// Until stalled+1s, changes published before the stall may still
	// arrive through NATS; after it only the Postgres fallback delivers.
	e.assertDeliveredDuring(stalled.Add(time.Second), resumed, "while NATS was stalled")
	e.assertStayedOpen("while NATS was stalled")
	e.assertProbesSynced(probes, "while NATS was stalled")
	if codes := e.writerCodes(); len(codes) > 0 {
		t.Errorf("writes failed while NATS was stalled (%s): writes do not depend on NATS", faultCodes(codes))
	}
}

// The instance the writers write through never publishes (NoPublish: a
// crash between commit and publish, every time) and is then killed: its
// connections are cut without a goodbye. Its streams end with a transport
// error or internal/unknown and resume on the other instance; the writers
// fail over; the surviving instance's relay publishes every change the
// killed one left unpublished.
func TestFaultKillWritingInstance(t *testing.T) {
	e := newFaultEnv(t, faultSetup{
		configure:  func(i int, c *Config) { c.NoPublish = i == 0 },
		writerInst: func(int) int { return 0 },
	})
	e.standardSubs()
	e.start()
	e.waitLive(5)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	left, err := e.unpublished(ctx)
	if err != nil {
		t.Fatalf("count unpublished changes: %v", err)
	}
	killed := time.Now()
	faultKill(t, e.apps[0])
	e.logf("instance #0 killed with %d changes unpublished", left)
	if left == 0 {
		t.Errorf("no change was unpublished when the instance was killed: the scenario tested nothing")
	}
	e.waitProgress(time.Now(), 10, "after instance #0 was killed")

	e.finish()
	e.assertEndedAndResumed(0, killed, nil)
	if !faultPoll(10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		n, err := e.unpublished(ctx)
		return err == nil && n == 0
	}) {
		n, err := e.unpublished(ctx)
		t.Errorf("%d changes still unpublished 10s after the writers stopped (%v): the surviving relay did not publish what the killed instance left", n, err)
	}
}

// Postgres (a private cluster) restarts, -m fast and -m immediate, while
// writes go on: writers see unavailable (never internal) and succeed again
// after; streams end at the Postgres state.
func TestFaultPostgresRestart(t *testing.T) {
	cluster := faultCluster(t)
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			e := newFaultEnv(t, faultSetup{dbURL: faultDatabase(t, cluster, "fault_"+mode)})
			e.standardSubs()
			e.start()
			e.waitLive(5)

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			e.logf("pg_ctl restart -m %s", mode)
			if err := cluster.Restart(ctx, mode); err != nil {
				t.Fatalf("restart postgres: %v", err)
			}
			e.logf("postgres accepts connections again")
			e.waitProgress(time.Now(), 10, "after Postgres restarted")

			e.finish()
			codes := e.writerCodes()
			if codes[connect.CodeUnavailable.String()] == 0 {
				t.Errorf("no write failed with unavailable during the restart (errors: %s): the outage was not observed", faultCodes(codes))
			}
		})
	}
}

// A consumer stops reading its stream for 5s (on a connection with a
// small receive window, on an instance with a small stream buffer). It
// gets `coalesced` events, never a silent skip, and ends at the final
// state; the other streams of its instance go on receiving meanwhile.
func TestFaultSlowConsumer(t *testing.T) {
	e := newFaultEnv(t, faultSetup{configure: func(_ int, c *Config) { c.StreamBuffer = 16 }})
	e.standardSubs()
	shared := e.keys[:3]
	slow := []*faultSub{
		e.addSub(faultSubSpec{inst: 0, user: "dave", recs: shared, slow: true}),
		e.addSub(faultSubSpec{inst: 0, user: "dave", scopes: shared, slow: true}),
	}
	e.start()
	e.waitLive(5)

	for _, s := range slow {
		s.pause(5 * time.Second)
	}
	var from, to time.Time
	if !faultPoll(15*time.Second, func() bool {
		for _, s := range slow {
			s.mu.Lock()
			n := len(s.pauses)
			if n > 0 && (from.IsZero() || s.pauses[0][0].After(from)) {
				from = s.pauses[0][0]
			}
			if n > 0 && (to.IsZero() || s.pauses[0][1].Before(to)) {
				to = s.pauses[0][1]
			}
			s.mu.Unlock()
			if n == 0 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the slow consumers did not pause and resume within 15s:\n%s", e.subReport())
	}
	e.logf("slow consumers paused from %s to %s", e.at(from), e.at(to))
	e.waitProgress(time.Now(), 10, "after the slow consumers read again")

	e.finish()
	for _, s := range slow {
		s.mu.Lock()
		n := s.coalesced
		s.mu.Unlock()
		if n == 0 {
			t.Errorf("%s: no coalesced event after not reading for 5s: want the versions it missed replaced by coalesced ones", s.name)
		}
	}
	e.assertDeliveredDuring(from.Add(500*time.Millisecond), to, "while a slow consumer did not read", slow...)
}

// One instance shuts down gracefully (SIGTERM) under load: its streams
// end with unavailable and resume on the other instance; the writers fail
// over.
func TestFaultGracefulShutdown(t *testing.T) {
	e := newFaultEnv(t, faultSetup{})
	e.standardSubs()
	e.start()
	e.waitLive(5)

	stopping := time.Now()
	e.apps[0].stop(t)
	e.logf("instance #0 shut down gracefully in %v", time.Since(stopping).Round(time.Millisecond))
	e.waitProgress(time.Now(), 10, "after instance #0 shut down")

	e.finish()
	want := connect.CodeUnavailable
	e.assertEndedAndResumed(0, stopping, &want)
}

// Clients that lost their state (or open a new page) subscribe from
// nothing again and again while the writes go on, on both instances:
// every snapshot must hold the scope's records as of the SyncedEvent's
// seq (sync.proto: after_seq 0 means a snapshot of the scope is sent;
// SyncedEvent: everything committed before the stream opened has been
// sent). Not a fault of the infrastructure, but the catch-up every resume
// after a reset goes through.
func TestFaultFreshSnapshotsUnderWrites(t *testing.T) {
	e := newFaultEnv(t, faultSetup{})
	e.standardSubs()
	fresh := e.freshSubs(6, 150*time.Millisecond)
	e.start()
	e.waitLive(5)
	e.hold(3 * time.Second)
	e.finish()
	opened := 0
	for _, s := range fresh {
		s.mu.Lock()
		for _, l := range s.lives {
			if !l.synced.IsZero() {
				opened++
			}
		}
		s.mu.Unlock()
	}
	e.logf("%d fresh streams caught up from a snapshot of %d scopes each while writes went on", opened, len(e.keys[:3]))
	if opened < 20 {
		t.Errorf("only %d fresh streams caught up in 3s: the scenario tested little", opened)
	}
}

// TestSoak runs writers and subscribers that keep leaving and resuming
// against two instances for $SLUICE_SOAK (a Go duration; default 5s),
// logging the process' RSS, goroutines, open files and the size of the
// change history at intervals. It fails if goroutines or open files grow
// without bound over the steady phase, or if any stream breaks a
// guarantee.
func TestSoak(t *testing.T) {
	dur := 5 * time.Second
	if v := os.Getenv("SLUICE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("SLUICE_SOAK=%q: want a positive Go duration (e.g. 10m)", v)
		}
		dur = d
	}
	interval := min(max(dur/10, time.Second), time.Minute)

	e := newFaultEnv(t, faultSetup{})
	e.standardSubs()
	for inst := range e.apps {
		e.addSub(faultSubSpec{inst: inst, user: "dave", recs: e.keys, cycle: time.Second})
		e.addSub(faultSubSpec{inst: inst, user: "dave", scopes: e.keys, cycle: time.Second})
	}
	e.freshSubs(2, time.Second)
	e.start()
	e.waitLive(5)

	type sample struct {
		at         time.Duration
		rss        int64
		goroutines int
		fds        int
		changes    int64
	}
	take := func() sample {
		s := sample{at: time.Since(e.t0), rss: faultRSS(), goroutines: faultGoroutines(), fds: faultFDs(), changes: -1}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.pgMu.Lock()
		if e.pg != nil {
			_ = e.pg.QueryRow(ctx, `SELECT count(*) FROM changes`).Scan(&s.changes)
		}
		e.pgMu.Unlock()
		t.Logf("soak %6.1fs: rss %6.1f MiB, goroutines %5d, open fds %4d, changes %7d",
			s.at.Seconds(), float64(s.rss)/(1<<20), s.goroutines, s.fds, s.changes)
		return s
	}
	if _, err := e.pgState(context.Background()); err != nil { // opens the connection take uses
		t.Fatalf("postgres: %v", err)
	}
	samples := []sample{take()}
	end := time.Now().Add(dur)
	tick := time.NewTicker(interval)
	for time.Now().Before(end) {
		<-tick.C
		samples = append(samples, take())
	}
	tick.Stop()
	e.finish()

	first, n := samples[0], len(samples)
	last := samples[n-1]
	if n >= 3 {
		// A transient spike at the end is not growth: take the lower of
		// the last two samples.
		if p := samples[n-2]; p.goroutines < last.goroutines {
			last.goroutines = p.goroutines
		}
		if p := samples[n-2]; p.fds < last.fds {
			last.fds = p.fds
		}
	}
	if limit := first.goroutines*3/2 + 50; last.goroutines > limit {
		t.Errorf("goroutines grew from %d to %d over the steady phase (limit %d): a leak", first.goroutines, last.goroutines, limit)
	}
	if limit := first.fds*3/2 + 30; last.fds > limit {
		t.Errorf("open file descriptors grew from %d to %d over the steady phase (limit %d): a leak", first.fds, last.fds, limit)
	}
}

// faultRSS returns the resident set size of this process (every
// in-process instance and the test itself), in bytes.
func faultRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	return -1
}

func faultGoroutines() int { return runtime.NumGoroutine() }

// faultFDs counts this process' open file descriptors.
func faultFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}
