package client

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
)

// Targets name what a stream follows: records by key and whole scopes,
// optionally from the cursors a client already holds.
type Targets struct {
	Records []*syncv1.RecordTarget
	Scopes  []*syncv1.ScopeTarget
}

// SubscribeOptions tune a stream.
type SubscribeOptions struct {
	// IdleTimeout reopens a stream silent this long (a dead connection a
	// proxy did not close). Zero means 45s (three server heartbeats).
	IdleTimeout time.Duration
	// OnResume, when set, is told each time the stream is reopened and why.
	OnResume func(err error)
	// OnDuplicate, when set, is told of every record or removed event the
	// stream drops because it holds that version (of the record) or seq
	// (of the scope) already. A server keeps its no-duplicate promise when
	// it is never called; tests and benchmarks count the calls.
	OnDuplicate func(*syncv1.SubscribeResponse)
}

// Subscribe runs a stream on targets until ctx ends or it ends for good.
// handle gets every event once, in order: record and removed events whose
// version (per record) and seq (per scope) are new, reset, revoked,
// synced (after every catch-up), ephemeral signals; heartbeats are
// swallowed. After any non-permanent end the stream is reopened, after a
// backoff, with the cursors held, so nothing is lost or repeated.
// Subscribe returns ctx's error, the permanent error that ended the
// stream, or handle's error.
func (c *Client) Subscribe(ctx context.Context, t Targets, opts SubscribeOptions, handle func(*syncv1.SubscribeResponse) error) error {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 45 * time.Second
	}
	s := &stream{versions: map[string]int64{}, seqs: map[string]int64{}, limits: map[string]int32{}}
	for _, r := range t.Records {
		s.records = append(s.records, r.GetKey())
		s.versions[r.GetKey()] = r.GetVersion()
	}
	for _, sc := range t.Scopes {
		s.scopes = append(s.scopes, sc.GetScope())
		s.seqs[sc.GetScope()] = sc.GetAfterSeq()
		s.limits[sc.GetScope()] = sc.GetLimit()
	}
	sync := syncv1connect.NewSyncServiceClient(c.hc, c.base, c.Options()...)
	failures := 0
	for {
		caughtUp, err := s.run(ctx, sync, opts, handle)
		var herr handlerError
		switch {
		case errors.As(err, &herr):
			return herr.err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && Permanent(err):
			return err
		case len(s.records) == 0 && len(s.scopes) == 0:
			return err // every target was revoked
		}
		if caughtUp {
			failures = 0
		}
		if opts.OnResume != nil {
			opts.OnResume(err)
		}
		if serr := sleep(ctx, c.cfg.Backoff.Delay(failures)); serr != nil {
			return serr
		}
		failures++
	}
}

// handlerError marks an error of the caller's handler.
type handlerError struct{ err error }

func (e handlerError) Error() string { return e.err.Error() }

// stream holds the cursors of a resumable stream.
type stream struct {
	records  []string
	scopes   []string
	versions map[string]int64 // record key -> version held
	seqs     map[string]int64 // scope -> seq held
	limits   map[string]int32 // scope -> window
}

// request builds the request that resumes from the cursors held.
func (s *stream) request() *syncv1.SubscribeRequest {
	req := &syncv1.SubscribeRequest{}
	for _, k := range s.records {
		req.Records = append(req.Records, &syncv1.RecordTarget{Key: k, Version: s.versions[k]})
	}
	for _, sc := range s.scopes {
		req.Scopes = append(req.Scopes, &syncv1.ScopeTarget{Scope: sc, AfterSeq: s.seqs[sc], Limit: s.limits[sc]})
	}
	return req
}

// run opens one connection and handles its events until it ends. It
// reports whether the stream caught up (so the backoff starts over).
func (s *stream) run(ctx context.Context, sync syncv1connect.SyncServiceClient, opts SubscribeOptions, handle func(*syncv1.SubscribeResponse) error) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := sync.Subscribe(ctx, connect.NewRequest(s.request()))
	if err != nil {
		return false, err
	}
	defer st.Close()
	// A watchdog ends a connection that has been silent too long. Each
	// event only stores the time (no channel send, no goroutine wake per
	// event); the watchdog looks at it once per idle period.
	idle := opts.IdleTimeout
	var last atomic.Int64 // unix nanoseconds of the last event
	var timedOut atomic.Bool
	last.Store(time.Now().UnixNano())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				silent := time.Since(time.Unix(0, last.Load()))
				if silent >= idle {
					timedOut.Store(true)
					cancel()
					return
				}
				t.Reset(idle - silent)
			}
		}
	}()
	defer func() {
		cancel()
		<-watched
	}()
	caughtUp := false
	for st.Receive() {
		last.Store(time.Now().UnixNano())
		ev := st.Msg()
		deliver, synced := s.apply(ev)
		caughtUp = caughtUp || synced
		if deliver {
			if err := handle(ev); err != nil {
				return caughtUp, handlerError{err}
			}
		} else if opts.OnDuplicate != nil && (ev.GetRecord() != nil || ev.GetRemoved() != nil) {
			opts.OnDuplicate(ev)
		}
	}
	err = st.Err()
	if timedOut.Load() {
		return caughtUp, connect.NewError(connect.CodeUnavailable, errors.New("stream silent past the idle timeout"))
	}
	if err == nil {
		err = connect.NewError(connect.CodeUnavailable, errors.New("stream ended"))
	}
	return caughtUp, err
}

// apply moves the cursors for ev and says whether the caller should see
// it (not a duplicate, not a heartbeat) and whether it is a synced event.
func (s *stream) apply(ev *syncv1.SubscribeResponse) (deliver, synced bool) {
	switch e := ev.GetEvent().(type) {
	case *syncv1.SubscribeResponse_Heartbeat:
		return false, false
	case *syncv1.SubscribeResponse_Synced:
		for _, sc := range e.Synced.GetScopes() {
			if _, ok := s.seqs[sc.GetScope()]; ok && sc.GetAfterSeq() > s.seqs[sc.GetScope()] {
				s.seqs[sc.GetScope()] = sc.GetAfterSeq()
			}
		}
		return true, true
	case *syncv1.SubscribeResponse_Reset_:
		if _, ok := s.seqs[e.Reset_.GetScope()]; ok {
			s.seqs[e.Reset_.GetScope()] = 0
		}
		return true, false
	case *syncv1.SubscribeResponse_Revoked:
		if k := e.Revoked.GetKey(); k != "" {
			s.records = remove(s.records, k)
			delete(s.versions, k)
		}
		if sc := e.Revoked.GetScope(); sc != "" {
			s.scopes = remove(s.scopes, sc)
			delete(s.seqs, sc)
		}
		return true, false
	case *syncv1.SubscribeResponse_Record:
		r := e.Record.GetRecord()
		return s.advance(r.GetKey(), r.GetScope(), r.GetVersion(), r.GetSeq()), false
	case *syncv1.SubscribeResponse_Removed:
		r := e.Removed
		return s.advance(r.GetKey(), r.GetScope(), r.GetVersion(), r.GetSeq()), false
	}
	return true, false
}

// advance moves the cursors past a record version and says whether it is
// new: a version above the one held for a record target, or a seq above
// the scope's cursor for a scope target.
func (s *stream) advance(key, scope string, version, seq int64) bool {
	fresh := false
	if held, ok := s.versions[key]; ok && version > held {
		s.versions[key] = version
		fresh = true
	}
	if held, ok := s.seqs[scope]; ok && seq > held {
		s.seqs[scope] = seq
		fresh = true
	}
	return fresh
}

func remove(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
