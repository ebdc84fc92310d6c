package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

// subscriber is one stream on every writer's record. Fields other than
// last and synced are owned by its goroutine until run returns.
type subscriber struct {
	index int
	sess  session
	keys  []string       // shared, read-only
	keyIx map[string]int // shared, read-only
	logs  []*sendLog     // shared; indexed by writer

	// last[i] mirrors tracks[i].last for the drain check.
	last   []atomic.Int64
	synced atomic.Bool

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
	heartbeats int64
	unmatched  int64 // live versions whose payload did not name a write of this run
	unexpected int64 // events other than record, synced and heartbeat
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

// run opens the stream, calls synced once the server has sent Synced, then
// checks live events until ctx ends. It returns nil when ctx ended, else
// what broke the stream. open is released once Synced arrives (or the
// stream fails first), so that catch-ups run with bounded concurrency.
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

	client := syncv1connect.NewSyncServiceClient(hc, base)
	req := &syncv1.SubscribeRequest{}
	for _, k := range s.keys {
		req.Records = append(req.Records, &syncv1.RecordTarget{Key: k})
	}
	started := time.Now()
	stream, err := client.Subscribe(ctx, bearer(s.sess, req))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe: %w", err)
	}
	defer stream.Close()
	var user userv1.User
	for stream.Receive() {
		now := time.Since(epoch)
		switch ev := stream.Msg().GetEvent().(type) {
		case *syncv1.SubscribeResponse_Record:
			rec := ev.Record.GetRecord()
			i, ok := s.keyIx[rec.GetKey()]
			if !ok {
				s.unexpected++
				continue
			}
			if !s.synced.Load() {
				s.tracks[i].snapshot(rec.GetVersion())
				s.last[i].Store(s.tracks[i].last)
				continue
			}
			s.lastRecv = now
			if s.tracks[i].observe(rec.GetVersion(), ev.Record.GetCoalesced()) == stale {
				continue
			}
			s.last[i].Store(s.tracks[i].last)
			if err := rec.GetPayload().UnmarshalTo(&user); err != nil {
				s.unmatched++
				continue
			}
			w, seq, ok := parseAvatarURL(run, user.GetAvatarUrl())
			if !ok || w != i {
				s.unmatched++
				continue
			}
			sent, ok := s.logs[w].get(seq)
			if !ok {
				s.unmatched++
				continue
			}
			s.record(w, seq, now-sent)
		case *syncv1.SubscribeResponse_Synced:
			if s.synced.Load() {
				s.unexpected++
				continue
			}
			s.syncTime = time.Since(started)
			for i := range s.tracks {
				s.initial[i] = s.tracks[i].last
			}
			s.synced.Store(true)
			release()
			synced()
		case *syncv1.SubscribeResponse_Heartbeat:
			s.heartbeats++
		default:
			s.unexpected++
		}
	}
	err = stream.Err()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		return errors.New("stream ended by the server")
	}
	return fmt.Errorf("stream: %w", err)
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
