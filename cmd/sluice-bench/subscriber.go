package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	sluice "github.com/sluicehq/sluice/client"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

// subscriber is one stream on every writer's record. Fields other than
// last, synced and live are owned by its goroutine until run returns.
type subscriber struct {
	index int
	sess  session
	keys  []string       // shared, read-only
	keyIx map[string]int // shared, read-only
	logs  []*sendLog     // shared; indexed by writer

	// last[i] mirrors tracks[i].last for the drain check.
	last   []atomic.Int64
	synced atomic.Bool
	// live counts the live versions seen so far (the sum of the tracks'
	// delivered), for the deliveries within the write window.
	live atomic.Int64

	tracks  []keyTrack
	initial []int64 // version per key at Synced
	// lat[w][seq] is the write→delivery latency of writer w's write seq on
	// this stream, -1 where none was recorded.
	lat        [][]time.Duration
	kept       int
	maxSamples int
	dropped    int64         // latency samples not kept (budget spent)
	worst      time.Duration // the slowest delivery on this stream
	syncTime   time.Duration
	unmatched  int64 // live versions whose payload did not name a write of this run
	unexpected int64 // events other than record and synced
	lastRecv   time.Duration
	err        error
}

func newSubscriber(index int, sess session, keys []string, keyIx map[string]int, logs []*sendLog, maxSamples int) *subscriber {
	return &subscriber{
		index:      index,
		sess:       sess,
		keys:       keys,
		keyIx:      keyIx,
		logs:       logs,
		last:       make([]atomic.Int64, len(keys)),
		tracks:     make([]keyTrack, len(keys)),
		initial:    make([]int64, len(keys)),
		lat:        make([][]time.Duration, len(keys)),
		maxSamples: maxSamples,
	}
}

// run opens the stream (through the Go client's Subscribe), calls synced
// once the server has sent Synced, then checks live events until ctx ends.
// It returns nil when ctx ended, else what broke the stream: the bench
// does not let the client resume a stream quietly, since that would hide
// what it measures. Versions the client drops as already held are counted
// as duplicates. open is released once Synced arrives (or the stream fails
// first), so that catch-ups run with bounded concurrency.
func (s *subscriber) run(ctx context.Context, hc *http.Client, base string, epoch time.Time, run string, open chan struct{}, synced func()) error {
	select {
	case open <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	held := true
	release := func() {
		if held {
			held = false
			<-open
		}
	}
	defer release()

	c := sluice.New(base, sluice.Config{HTTPClient: hc, Token: s.sess.token})
	targets := sluice.Targets{}
	for _, k := range s.keys {
		targets.Records = append(targets.Records, &syncv1.RecordTarget{Key: k})
	}
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var ended error // why the stream ended, when the client would resume it
	opts := sluice.SubscribeOptions{
		OnResume: func(err error) {
			ended = err
			cancel()
		},
		OnDuplicate: func(ev *syncv1.SubscribeResponse) {
			if i, ok := s.keyIx[ev.GetRecord().GetRecord().GetKey()]; ok && s.synced.Load() {
				s.tracks[i].duplicate++
			}
		},
	}
	started := time.Now()
	var user userv1.User
	err := c.Subscribe(streamCtx, targets, opts, func(msg *syncv1.SubscribeResponse) error {
		now := time.Since(epoch)
		switch ev := msg.GetEvent().(type) {
		case *syncv1.SubscribeResponse_Record:
			rec := ev.Record.GetRecord()
			i, ok := s.keyIx[rec.GetKey()]
			if !ok {
				s.unexpected++
				return nil
			}
			if !s.synced.Load() {
				s.tracks[i].snapshot(rec.GetVersion())
				s.last[i].Store(s.tracks[i].last)
				return nil
			}
			s.lastRecv = now
			if s.tracks[i].observe(rec.GetVersion(), ev.Record.GetCoalesced()) == stale {
				return nil
			}
			s.last[i].Store(s.tracks[i].last)
			s.live.Add(1)
			if err := rec.GetPayload().UnmarshalTo(&user); err != nil {
				s.unmatched++
				return nil
			}
			w, seq, ok := parseAvatarURL(run, user.GetAvatarUrl())
			if !ok || w != i {
				s.unmatched++
				return nil
			}
			sent, ok := s.logs[w].get(seq)
			if !ok {
				s.unmatched++
				return nil
			}
			s.record(w, seq, now-sent)
		case *syncv1.SubscribeResponse_Synced:
			if s.synced.Load() {
				s.unexpected++
				return nil
			}
			s.syncTime = time.Since(started)
			for i := range s.tracks {
				s.initial[i] = s.tracks[i].last
			}
			s.synced.Store(true)
			release()
			synced()
		default:
			s.unexpected++
		}
		return nil
	})
	switch {
	case ctx.Err() != nil:
		return nil
	case ended != nil:
		return fmt.Errorf("stream: %w", ended)
	default:
		return fmt.Errorf("stream: %w", err)
	}
}

// record keeps one write→delivery sample, within the sample budget.
func (s *subscriber) record(w int, seq int64, d time.Duration) {
	s.worst = max(s.worst, d)
	if s.kept >= s.maxSamples {
		s.dropped++
		return
	}
	l := s.lat[w]
	for int64(len(l)) <= seq {
		l = append(l, -1)
	}
	l[seq] = d
	s.lat[w] = l
	s.kept++
}

// liveDeliveries returns the live versions the subscribers have seen so far.
func liveDeliveries(subs []*subscriber) int64 {
	var n int64
	for _, s := range subs {
		n += s.live.Load()
	}
	return n
}

// streamParams are what every stream of a streamSet shares.
type streamParams struct {
	base     string
	epoch    time.Time
	run      string
	sessions []session // round-robin over the streams
	keys     []string
	keyIx    map[string]int
	logs     []*sendLog
	perConn  int  // streams per HTTP/2 connection
	http1    bool // streams over HTTP/1.1 (perConn is 1)
	samples  int  // latency samples kept per stream
	parallel int  // streams catching up at once
	// setupTimeout is only named in errors: grow's caller sets the deadline.
	setupTimeout time.Duration
}

// streamSet opens subscriber streams, in one step or several, and runs them
// until stopped. Streams k·perConn to (k+1)·perConn-1 share connection k,
// so with perConn 1 every stream has its own TCP connection. Its methods
// must be called by one goroutine; subs may be read after stop.
type streamSet struct {
	p      streamParams
	cl     *clients
	ctx    context.Context // ends every stream
	cancel context.CancelFunc
	wg     sync.WaitGroup
	open   chan struct{} // bounds the streams catching up at once
	synced atomic.Int64
	failed chan struct{} // signalled, without blocking, when a stream fails
	hc     *http.Client  // the connection of the latest group
	subs   []*subscriber
}

// newStreamSet returns an empty set whose streams end with ctx, on
// connections from cl.
func newStreamSet(ctx context.Context, cl *clients, p streamParams) *streamSet {
	ctx, cancel := context.WithCancel(ctx)
	return &streamSet{
		p:      p,
		cl:     cl,
		ctx:    ctx,
		cancel: cancel,
		open:   make(chan struct{}, p.parallel),
		failed: make(chan struct{}, 1),
	}
}

// grow opens streams until there are n and waits until every one of them
// has sent Synced. It fails when a stream fails (after stopping them all)
// or when setupCtx ends first.
func (ss *streamSet) grow(setupCtx context.Context, n int) error {
	if n <= len(ss.subs) {
		return nil
	}
	target := int64(n)
	reached := make(chan struct{})
	onSynced := func() {
		if ss.synced.Add(1) == target {
			close(reached)
		}
	}
	for i := len(ss.subs); i < n; i++ {
		if i%ss.p.perConn == 0 {
			hc, err := ss.cl.newClient(setupCtx, ss.p.base, ss.p.http1)
			if err != nil {
				return err // the caller's stop ends the streams opened so far
			}
			ss.hc = hc
		}
		s := newSubscriber(i, ss.p.sessions[i%len(ss.p.sessions)], ss.p.keys, ss.p.keyIx, ss.p.logs, ss.p.samples)
		ss.subs = append(ss.subs, s)
		ss.wg.Add(1)
		go func(hc *http.Client) {
			defer ss.wg.Done()
			if err := s.run(ss.ctx, hc, ss.p.base, ss.p.epoch, ss.p.run, ss.open, onSynced); err != nil {
				s.err = err
				select {
				case ss.failed <- struct{}{}:
				default:
				}
			}
		}(ss.hc)
	}
	select {
	case <-reached:
		return nil
	case <-ss.failed:
		ss.stop()
		return fmt.Errorf("during setup: subscriber: %w", firstSubErr(ss.subs))
	case <-setupCtx.Done():
		err := ss.ctx.Err() // the run's context ended, not just setup
		ss.stop()
		if err != nil {
			return err
		}
		return fmt.Errorf("only %d of %d streams synced within -setup-timeout %s", ss.synced.Load(), n, ss.p.setupTimeout)
	}
}

// stop ends every stream and waits until their goroutines have returned.
// It may be called more than once.
func (ss *streamSet) stop() {
	ss.cancel()
	ss.wg.Wait()
}
