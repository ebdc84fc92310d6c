package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// idleSettle is how long the idle mode lets the server settle before it
// reads the server's memory: the streams' catch-up garbage is collected
// and the heartbeats have started.
const idleSettle = 2 * time.Second

// maxIdleSteps bounds the number of stream counts of -idle.
const maxIdleSteps = 32

// parseIdle parses the -idle list: comma-separated stream counts, strictly
// ascending, each 1..50000.
func parseIdle(spec string) ([]int, error) {
	parts := strings.Split(spec, ",")
	if len(parts) > maxIdleSteps {
		return nil, fmt.Errorf("-idle %q: want at most %d counts", spec, maxIdleSteps)
	}
	out := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("-idle %q: want stream counts such as 1000,5000: %w", spec, err)
		}
		if n < 1 || n > 50_000 {
			return nil, fmt.Errorf("-idle %q: %d streams: want 1..50000", spec, n)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-idle %q: want ascending counts", spec)
		}
		out = append(out, n)
	}
	return out, nil
}

// kibPerStream returns the server's resident-set growth per stream, in KiB
// (the "kB" of /proc), from baseline bytes with no streams to rss bytes
// with n streams; ok is false when either reading is unknown (negative) or
// n is not positive. The growth may be negative if the server returned
// memory to the system meanwhile.
func kibPerStream(baseline, rss int64, n int) (kib float64, ok bool) {
	if baseline < 0 || rss < 0 || n <= 0 {
		return 0, false
	}
	return float64(rss-baseline) / 1024 / float64(n), true
}

// idleStep is the server's state with a number of idle streams open.
type idleStep struct {
	streams int
	conns   int64         // TCP connections open, the setup one included
	open    time.Duration // to open this step's new streams and see them synced
	added   int           // streams opened in this step
	rss     int64         // the server's resident set in bytes, -1 if unknown
}

// idleResult is everything an idle-memory run measured.
type idleResult struct {
	runInfo

	records        int  // records each stream watches
	devUsers       bool // logged in as the development users
	sessions       int
	streamsPerConn int
	subHTTP1       bool
	settle         time.Duration

	baseline      int64 // the server's resident set with no stream, bytes; -1 if unknown
	baselineConns int64
	steps         []idleStep
	peak          memory // at the last step

	streamErrs     int // streams that ended before the bench closed them
	firstStreamErr error
}

// ok reports whether every stream stayed open.
func (r *idleResult) ok() bool { return r.streamErrs == 0 }

// idle measures the server's memory per idle stream: it logs in like a
// write run, reads the server's resident set with no stream open, then
// opens synced streams up to each of cfg.idle in turn and reads it again
// after idleSettle each time. Nothing is written. Progress goes to logw.
func idle(ctx context.Context, cfg *config, command string, logw io.Writer) (_ *idleResult, err error) {
	progress := progressTo(logw)
	total := cfg.idle[len(cfg.idle)-1]
	res := &idleResult{
		runInfo:        newRunInfo(cfg, command),
		records:        cfg.writers,
		devUsers:       cfg.userPattern == "",
		streamsPerConn: cfg.streamsPerConn,
		subHTTP1:       cfg.subHTTP1,
		settle:         idleSettle,
	}
	creds, err := writerCreds(cfg.writers, cfg.userPattern, cfg.passPattern)
	if err != nil {
		return nil, err
	}
	runID, err := newRunID()
	if err != nil {
		return nil, err
	}
	conns := (total+cfg.streamsPerConn-1)/cfg.streamsPerConn + 1
	stopServer, err := startServer(ctx, cfg, conns, &res.runInfo, progress)
	defer stopServer()
	if err != nil {
		return nil, err
	}
	if res.serverPID <= 0 {
		return nil, errors.New("-idle: the server's pid is unknown")
	}
	base := res.base

	var cl clients
	defer cl.close()
	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.setupTimeout)
	defer cancelSetup()
	setupHC, err := cl.newClient(setupCtx, base, false)
	if err != nil {
		return nil, err
	}
	progress("logging in %d writers and %d subscriber sessions", cfg.writers, min(cfg.sessions, total))
	tg, err := loginTargets(setupCtx, setupHC, base, creds, min(cfg.sessions, total))
	if err != nil {
		return nil, err
	}
	cancelSetup()
	res.sessions = len(tg.sessions)
	logs := make([]*sendLog, len(tg.keys))
	for i := range logs {
		logs[i] = &sendLog{}
	}

	if err := sleepCtx(ctx, idleSettle); err != nil {
		return nil, err
	}
	res.baseline = readMemory(res.serverPID).rss
	res.baselineConns = cl.open.Load()
	progress("no streams: server RSS %s", mib1(res.baseline))

	streams := newStreamSet(ctx, &cl, streamParams{
		base:         base,
		epoch:        res.date,
		run:          runID,
		sessions:     tg.sessions,
		keys:         tg.keys,
		keyIx:        tg.keyIx,
		logs:         logs,
		perConn:      cfg.streamsPerConn,
		http1:        cfg.subHTTP1,
		samples:      1, // nothing is written
		parallel:     cfg.openParallel,
		setupTimeout: cfg.setupTimeout,
	})
	defer streams.stop()
	for _, n := range cfg.idle {
		progress("opening streams up to %d, at most %d per connection", n, cfg.streamsPerConn)
		step := idleStep{streams: n, added: n - len(streams.subs)}
		stepCtx, cancelStep := context.WithTimeout(ctx, cfg.setupTimeout)
		start := time.Now()
		err := streams.grow(stepCtx, n)
		step.open = time.Since(start)
		cancelStep()
		if err != nil {
			return nil, err
		}
		if err := sleepCtx(ctx, idleSettle); err != nil {
			return nil, err
		}
		step.conns = cl.open.Load()
		mem := readMemory(res.serverPID)
		step.rss, res.peak = mem.rss, mem
		res.steps = append(res.steps, step)
		progress("%d streams synced in %s; server RSS %s, %s per stream", n, step.open.Round(time.Millisecond), mib1(step.rss), kib(kibPerStream(res.baseline, step.rss, n)))
	}
	streams.stop()
	// Every subscriber goroutine has returned: their fields are ours now.
	for _, s := range streams.subs {
		if s.err != nil {
			res.streamErrs++
			if res.firstStreamErr == nil {
				res.firstStreamErr = fmt.Errorf("subscriber %d: %w", s.index, s.err)
			}
		}
	}
	return res, nil
}

// sleepCtx waits for d or until ctx ends, whichever is first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// mib1 formats bytes in MiB with one decimal, "n/a" when unknown.
func mib1(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// kib formats a growth per stream, "n/a" when unknown.
func kib(v float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.1f KiB", v)
}

// writeSummary prints the human-readable report.
func (r *idleResult) writeSummary(w io.Writer) {
	r.writeHeader(w)
	fmt.Fprintf(w, "idle      streams on %d record(s) each, sharing %d login sessions, %s; nothing written; server RSS read %s after each step\n",
		r.records, r.sessions, perConn(r.streamsPerConn, r.subHTTP1), r.settle)
	if r.devUsers {
		fmt.Fprintln(w, "          the development users' logins cost the server tens of MiB each (argon2id), garbage that the baseline may hold; use cheap bench users (-write-users-file, -user-pattern) for clean numbers")
	}
	fmt.Fprintf(w, "baseline  no streams: server RSS %s (%d TCP connection for the logins)\n", mib1(r.baseline), r.baselineConns)
	for _, s := range r.steps {
		fmt.Fprintf(w, "streams   %d: %d opened and synced in %s (%.0f/s), %d TCP connections; server RSS %s, %s per idle stream\n",
			s.streams, s.added, s.open.Round(time.Millisecond), perSecond(int64(s.added), s.open), s.conns,
			mib1(s.rss), kib(kibPerStream(r.baseline, s.rss, s.streams)))
	}
	fmt.Fprintf(w, "server    peak RSS (VmHWM) %s\n", mib1(r.peak.hwm))
	fmt.Fprintf(w, "checks    streams that ended before the bench closed them %d\n", r.streamErrs)
	if r.firstStreamErr != nil {
		fmt.Fprintf(w, "          first stream error: %v\n", r.firstStreamErr)
	}
	if r.ok() {
		fmt.Fprintln(w, "RESULT    PASS")
	} else {
		fmt.Fprintln(w, "RESULT    FAIL")
	}
}

// idleMarkdownHeader is the header of the idle-memory table.
const idleMarkdownHeader = `| streams | streams per connection | TCP connections | streams added | open + sync of those | server RSS | RSS per idle stream |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: |`

// writeMarkdown prints the table header and a row per stream count, the
// baseline first.
func (r *idleResult) writeMarkdown(w io.Writer) {
	fmt.Fprintln(w, idleMarkdownHeader)
	fmt.Fprintf(w, "| 0 | %d | %d | – | – | %s | – |\n", r.streamsPerConn, r.baselineConns, mib1(r.baseline))
	for _, s := range r.steps {
		fmt.Fprintf(w, "| %d | %d | %d | %d | %s | %s | %s |\n", s.streams, r.streamsPerConn, s.conns, s.added,
			s.open.Round(time.Millisecond), mib1(s.rss), kib(kibPerStream(r.baseline, s.rss, s.streams)))
	}
}
