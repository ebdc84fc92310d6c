package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
)

// avatarURL encodes who wrote a version and when: the run, the writer and
// the writer's sequence number. Subscribers decode it from the delivered
// payload, so a delivery is matched to its write even when it arrives
// before the write's response.
func avatarURL(run string, writer int, seq int64) string {
	return "https://bench.example/" + run + "/" + strconv.Itoa(writer) + "/" + strconv.FormatInt(seq, 10)
}

// parseAvatarURL reverses avatarURL; ok is false for any other URL (for
// example one written by an earlier run, which has another run id).
func parseAvatarURL(run, u string) (writer int, seq int64, ok bool) {
	rest, found := strings.CutPrefix(u, "https://bench.example/"+run+"/")
	if !found {
		return 0, 0, false
	}
	ws, ss, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	s, err2 := strconv.ParseInt(ss, 10, 64)
	if err1 != nil || err2 != nil || w < 0 || s < 0 {
		return 0, 0, false
	}
	return w, s, true
}

// sendLog holds, per sequence number, when a writer sent the write: the
// offset from the bench epoch. The writer appends; subscribers look up. It
// is safe for concurrent use.
type sendLog struct {
	mu sync.RWMutex
	at []time.Duration
}

// add records the send time of the next sequence number and returns it.
func (l *sendLog) add(at time.Duration) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, at)
	return int64(len(l.at) - 1)
}

// get returns the send time of seq.
func (l *sendLog) get(seq int64) (time.Duration, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if seq < 0 || seq >= int64(len(l.at)) {
		return 0, false
	}
	return l.at[seq], true
}

// writer is one user writing its own profile in a loop. Its fields other
// than log are owned by its goroutine until run returns.
type writer struct {
	index int
	sess  session
	key   string
	log   *sendLog

	ok, errs     int64
	firstErr     error
	rpc          []time.Duration
	rpcSeq       []int64 // the sequence number of each rpc sample
	firstVersion int64   // version returned by the first successful write
	lastVersion  int64   // highest version returned
	versionJumps int64   // responses whose version was not last+1 with no error in between
	maxLag       time.Duration
}

// writeParams are the settings shared by every writer of a run.
type writeParams struct {
	run      string
	epoch    time.Time
	interval time.Duration // between one writer's writes; 0 means closed loop
	offset   time.Duration // stagger between writers at a fixed rate
	timeout  time.Duration // per RPC
	budget   *atomic.Int64 // writes left for the whole run
}

// run writes until stop ends or the write budget is spent. Each RPC gets its
// own deadline under ctx, so the end of the run does not cut a write in
// flight (whose outcome would then be unknown).
func (w *writer) run(ctx, stop context.Context, hc *http.Client, base string, p writeParams) {
	client := userv1connect.NewUserServiceClient(hc, base)
	start := time.Now().Add(time.Duration(w.index) * p.offset)
	errBefore := false
	for n := int64(0); ; n++ {
		if p.interval > 0 {
			due := start.Add(time.Duration(n) * p.interval)
			if d := time.Until(due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-stop.Done():
					t.Stop()
					return
				case <-t.C:
				}
			} else {
				w.maxLag = max(w.maxLag, -d)
			}
		}
		if stop.Err() != nil || ctx.Err() != nil {
			return
		}
		if p.budget.Add(-1) < 0 {
			return
		}
		sent := time.Now()
		seq := w.log.add(sent.Sub(p.epoch))
		callCtx, cancel := context.WithTimeout(ctx, p.timeout)
		res, err := client.SetAvatarUrl(callCtx, bearer(w.sess, &userv1.SetAvatarUrlRequest{AvatarUrl: avatarURL(p.run, w.index, seq)}))
		elapsed := time.Since(sent)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.errs++
			if w.firstErr == nil {
				w.firstErr = err
			}
			errBefore = true
			// Do not spin on a server that refuses every write.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if got := res.Msg.GetWritten().GetKey(); got != w.key {
			w.errs++
			if w.firstErr == nil {
				w.firstErr = fmt.Errorf("write returned key %q, want %q", got, w.key)
			}
			errBefore = true
			continue
		}
		w.ok++
		w.rpc = append(w.rpc, elapsed)
		w.rpcSeq = append(w.rpcSeq, seq)
		v := res.Msg.GetWritten().GetVersion()
		if w.firstVersion == 0 {
			w.firstVersion = v
		} else if v != w.lastVersion+1 && !errBefore {
			w.versionJumps++
		}
		w.lastVersion = max(w.lastVersion, v)
		errBefore = false
	}
}
