package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// machine describes where the bench ran.
type machine struct {
	cpus     int
	model    string
	memTotal int64 // bytes; 0 if unknown
	load     string
}

func readMachine() machine {
	m := machine{cpus: runtime.NumCPU(), model: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if kb, ok := procField("/proc/meminfo", "MemTotal"); ok {
		m.memTotal = kb << 10
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.load = strings.Join(f[:3], " ")
		}
	}
	return m
}

// runInfo says when, where and against which server a run ran.
type runInfo struct {
	date    time.Time
	command string
	machine machine

	base      string
	serverPID int    // 0 if unknown
	serverLog string // set when spawned
}

// writeHeader prints the first lines of a report.
func (i *runInfo) writeHeader(w io.Writer) {
	m := i.machine
	fmt.Fprintf(w, "sluice-bench  %s\n", i.date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine   %d CPUs (%s), %s RAM, load %s, %s %s/%s\n", m.cpus, m.model, mib(m.memTotal), m.load, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "command   %s\n", i.command)
	server := i.base
	if i.serverLog != "" {
		server += fmt.Sprintf(" (spawned, pid %d, log %s)", i.serverPID, i.serverLog)
	} else if i.serverPID > 0 {
		server += fmt.Sprintf(" (pid %d)", i.serverPID)
	}
	fmt.Fprintf(w, "server    %s\n", server)
}

// result is everything one run measured.
type result struct {
	runInfo

	subscribers, writers, sessions int
	streamsPerConn                 int
	subHTTP1                       bool
	dials, conns                   int64 // TCP connections dialed; open after setup
	writerNames                    []string
	rate                           float64
	duration                       time.Duration
	drain                          time.Duration

	setup   time.Duration
	syncLat summary

	writes, writeErrs int64
	firstWriteErr     error
	writeElapsed      time.Duration
	rpc               summary
	versionJumps      int64
	maxLag            time.Duration
	budget            int64
	budgetHit         bool

	deliveries, expected int64
	deliverySpan         time.Duration
	lat                  summary
	fanout               summary // per write: until the last stream had it
	latDropped           int64
	slowStreams          int // streams with a delivery slower than 1s
	slowConns            int // connections those streams were on
	timeline             []bucket

	missed, missedCoalesced, duplicate int64
	unmatched, unexpected              int64
	notFinal                           int   // subscriber×key pairs short of the final version
	notFinalVersions                   int64 // versions those pairs lack
	drained                            time.Duration
	streamErrs                         int
	firstStreamErr                     error

	memSetup, memEnd    memory
	serverCPU, benchCPU float64 // cores used on average while writing; <0 unknown
	// serverCPUTime is the CPU time the server used while writing, <0 if
	// unknown; windowDeliveries the live deliveries received meanwhile.
	serverCPUTime    time.Duration
	windowDeliveries int64
}

// cpuPerDelivery returns the server's CPU time while writing per delivery
// received meanwhile; ok is false when either is unknown or zero.
func (r *result) cpuPerDelivery() (time.Duration, bool) {
	return perDelivery(r.serverCPUTime, r.windowDeliveries)
}

// perDelivery divides cpu by deliveries; ok is false when cpu is unknown
// (negative) or there were no deliveries.
func perDelivery(cpu time.Duration, deliveries int64) (time.Duration, bool) {
	if cpu < 0 || deliveries <= 0 {
		return 0, false
	}
	return cpu / time.Duration(deliveries), true
}

// micros formats a CPU time per delivery, "n/a" when unknown.
func micros(d time.Duration, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// ok reports whether every check passed.
func (r *result) ok() bool {
	return r.writes > 0 && r.writeErrs == 0 && r.versionJumps == 0 &&
		r.missed == 0 && r.duplicate == 0 && r.notFinal == 0 &&
		r.unmatched == 0 && r.unexpected == 0 && r.streamErrs == 0
}

func (r *result) mode() string {
	if r.rate > 0 {
		return fmt.Sprintf("fixed rate %g writes/s", r.rate)
	}
	return "closed loop"
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func mib(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

// perConn describes how the streams share connections.
func perConn(n int, http1 bool) string {
	if http1 {
		return "each stream on its own HTTP/1.1 connection, as a browser without TLS has"
	}
	if n == 1 {
		return "each stream on its own HTTP/2 connection, as browser and mobile clients have"
	}
	return fmt.Sprintf("at most %d streams per HTTP/2 connection", n)
}

// cpuOrNA formats a CPU time, "n/a" when unknown (negative).
func cpuOrNA(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return d.Round(time.Millisecond).String()
}

func cores(c float64) string {
	if c < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f cores", c)
}

// writeSummary prints the human-readable report.
func (r *result) writeSummary(w io.Writer) {
	r.writeHeader(w)
	fmt.Fprintf(w, "setup     %d subscribers sharing %d login sessions, %s (%d TCP connections open after setup; %d dialed in all, writers included); all synced in %s (subscribe→synced p50 %s, p99 %s, max %s)\n",
		r.subscribers, r.sessions, perConn(r.streamsPerConn, r.subHTTP1), r.conns, r.dials, r.setup.Round(time.Millisecond), ms(r.syncLat.p50), ms(r.syncLat.p99), ms(r.syncLat.max))
	fmt.Fprintf(w, "writers   %d (%s), %s for %s, each on its own connection\n", r.writers, strings.Join(r.writerNames, ", "), r.mode(), r.duration)
	fmt.Fprintf(w, "writes    %d ok, %d failed, %.1f/s over %s; RPC p50 %s, p90 %s, p99 %s, max %s\n",
		r.writes, r.writeErrs, perSecond(r.writes, r.writeElapsed), r.writeElapsed.Round(time.Millisecond), ms(r.rpc.p50), ms(r.rpc.p90), ms(r.rpc.p99), ms(r.rpc.max))
	if r.firstWriteErr != nil {
		fmt.Fprintf(w, "          first write error: %v\n", r.firstWriteErr)
	}
	if r.rate > 0 {
		fmt.Fprintf(w, "          max lag behind schedule %s (latency is measured from the actual send)\n", ms(r.maxLag))
	}
	if r.budgetHit {
		fmt.Fprintf(w, "          stopped early: write budget of %d spent (-max-writes)\n", r.budget)
	}
	fmt.Fprintf(w, "delivery  %d live deliveries of %d expected, %.0f/s over %s; write→delivery p50 %s, p90 %s, p99 %s, max %s\n",
		r.deliveries, r.expected, perSecond(r.deliveries, r.deliverySpan), r.deliverySpan.Round(time.Millisecond), ms(r.lat.p50), ms(r.lat.p90), ms(r.lat.p99), ms(r.lat.max))
	if r.subscribers > 0 {
		fmt.Fprintf(w, "          per write, until the last stream had it: p50 %s, p99 %s, max %s; streams with a delivery slower than 1 s: %d (on %d of their connections)\n",
			ms(r.fanout.p50), ms(r.fanout.p99), ms(r.fanout.max), r.slowStreams, r.slowConns)
	}
	if r.latDropped > 0 {
		fmt.Fprintf(w, "          %d latency samples not kept (per-subscriber sample cap)\n", r.latDropped)
	}
	fmt.Fprintf(w, "checks    missed %d, missed but marked coalesced %d, duplicate %d, version jumps in write responses %d, unmatched payloads %d, unexpected events %d, stream errors %d\n",
		r.missed, r.missedCoalesced, r.duplicate, r.versionJumps, r.unmatched, r.unexpected, r.streamErrs)
	if r.firstStreamErr != nil {
		fmt.Fprintf(w, "          first stream error: %v\n", r.firstStreamErr)
	}
	fmt.Fprintf(w, "final     %d subscriber×key pairs short of the final version (%d versions) after waiting %s (limit %s)\n",
		r.notFinal, r.notFinalVersions, r.drained.Round(time.Millisecond), r.drain)
	fmt.Fprintf(w, "server    RSS %s after setup, %s at end, peak (VmHWM) %s; CPU %s while writing\n",
		mib(r.memSetup.rss), mib(r.memEnd.rss), mib(r.memEnd.hwm), cores(r.serverCPU))
	if d, ok := r.cpuPerDelivery(); ok {
		fmt.Fprintf(w, "          CPU per delivery %s (%s of CPU over the %d live deliveries received while writing; write RPCs included)\n",
			micros(d, ok), r.serverCPUTime.Round(time.Millisecond), r.windowDeliveries)
	} else if r.serverPID <= 0 {
		fmt.Fprintln(w, "          CPU per delivery n/a (server pid unknown: use -spawn or -server-pid)")
	} else {
		fmt.Fprintf(w, "          CPU per delivery n/a (CPU time %s, %d live deliveries while writing)\n", cpuOrNA(r.serverCPUTime), r.windowDeliveries)
	}
	fmt.Fprintf(w, "bench     CPU %s while writing (the bench shares the machine with the server)\n", cores(r.benchCPU))
	if len(r.timeline) > 0 {
		fmt.Fprintln(w, "timeline  by send time since the writes began: writes sent, worst RPC, worst time until the last stream had the write")
		for _, b := range r.timeline {
			fmt.Fprintf(w, "          %8s  %6d  RPC max %10s  last stream max %10s\n", b.start, b.writes, ms(b.rpcMax), ms(b.fanoutMax))
		}
	}
	if r.ok() {
		fmt.Fprintln(w, "RESULT    PASS")
	} else {
		fmt.Fprintln(w, "RESULT    FAIL")
	}
}

// markdownHeader is the header of the results table.
const markdownHeader = `| subscribers | writers | mode | duration | writes | writes/s | RPC p50 | RPC p99 | write→delivery p50 | p99 | max | deliveries | deliveries/s | missed | duplicate | server RSS end / peak | server CPU per delivery |
| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`

// writeMarkdown prints the table header and this run's row.
func (r *result) writeMarkdown(w io.Writer) {
	mode := "closed loop"
	if r.rate > 0 {
		mode = fmt.Sprintf("%g/s", r.rate)
	}
	fmt.Fprintln(w, markdownHeader)
	fmt.Fprintf(w, "| %d | %d | %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %.0f | %d | %d | %s / %s | %s |\n",
		r.subscribers, r.writers, mode, r.duration, r.writes, perSecond(r.writes, r.writeElapsed),
		ms(r.rpc.p50), ms(r.rpc.p99), ms(r.lat.p50), ms(r.lat.p99), ms(r.lat.max),
		r.deliveries, perSecond(r.deliveries, r.deliverySpan), r.missed+r.missedCoalesced, r.duplicate,
		mib(r.memEnd.rss), mib(r.memEnd.hwm), micros(r.cpuPerDelivery()))
}

// bucket is one interval of the timeline, by the send time of writes.
type bucket struct {
	start             time.Duration // since the writes began
	writes            int
	rpcMax, fanoutMax time.Duration
}

// buildTimeline groups the writes by send time into buckets of width d.
// fanout[w][seq] is the time until the last stream had the write.
func buildTimeline(d, writeStart time.Duration, writers []*writer, fanout [][]time.Duration) []bucket {
	var out []bucket
	at := func(sent time.Duration) *bucket {
		i := max(int((sent-writeStart)/d), 0)
		for len(out) <= i {
			out = append(out, bucket{start: time.Duration(len(out)) * d})
		}
		return &out[i]
	}
	for wi, w := range writers {
		for i, seq := range w.rpcSeq {
			sent, ok := w.log.get(seq)
			if !ok {
				continue
			}
			b := at(sent)
			b.writes++
			b.rpcMax = max(b.rpcMax, w.rpc[i])
			if seq < int64(len(fanout[wi])) {
				b.fanoutMax = max(b.fanoutMax, fanout[wi][seq])
			}
		}
	}
	return out
}

// addWrites folds in the writers' results and returns the final version of
// each writer's record. Call it only after every writer has returned.
func (r *result) addWrites(writers []*writer) (final []int64) {
	final = make([]int64, len(writers))
	var rpc []time.Duration
	for i, w := range writers {
		final[i] = w.lastVersion
		r.writes += w.ok
		r.writeErrs += w.errs
		r.versionJumps += w.versionJumps
		r.maxLag = max(r.maxLag, w.maxLag)
		if r.firstWriteErr == nil && w.firstErr != nil {
			r.firstWriteErr = fmt.Errorf("%s: %w", w.sess.userID, w.firstErr)
		}
		rpc = append(rpc, w.rpc...)
	}
	r.rpc = summarize(rpc)
	return final
}

// addStreams folds in the subscribers' results, checking them against the
// final versions; writeStart is the start of the writes since the bench
// epoch. Call it only after every subscriber and writer has returned. It
// releases the subscribers' samples.
func (r *result) addStreams(subs []*subscriber, writers []*writer, final []int64, writeStart time.Duration, streamsPerConn int, timeline time.Duration) {
	kept := 0
	for _, s := range subs {
		kept += s.kept
	}
	lat := make([]time.Duration, 0, kept)
	// fanout[w][seq] is the time until the last stream had writer w's
	// write seq.
	fanout := make([][]time.Duration, len(writers))
	for w, wr := range writers {
		fanout[w] = make([]time.Duration, len(wr.log.at))
	}
	slowConns := map[int]bool{}
	for _, s := range subs {
		for w, l := range s.lat {
			for seq, d := range l {
				if d >= 0 {
					lat = append(lat, d)
					fanout[w][seq] = max(fanout[w][seq], d)
				}
			}
		}
		s.lat = nil
		if s.worst > time.Second {
			r.slowStreams++
			slowConns[s.index/streamsPerConn] = true
		}
		r.latDropped += s.dropped
		r.unmatched += s.unmatched
		r.unexpected += s.unexpected
		if s.err != nil {
			r.streamErrs++
			if r.firstStreamErr == nil {
				r.firstStreamErr = fmt.Errorf("subscriber %d: %w", s.index, s.err)
			}
		}
		r.deliverySpan = max(r.deliverySpan, s.lastRecv-writeStart)
		for i := range s.tracks {
			t := &s.tracks[i]
			r.deliveries += t.delivered
			r.missed += t.missed
			r.missedCoalesced += t.missedCoalesced
			r.duplicate += t.duplicate
			r.expected += max(0, final[i]-s.initial[i])
			if t.last < final[i] {
				r.notFinal++
				r.notFinalVersions += final[i] - t.last
			}
		}
	}
	r.slowConns = len(slowConns)
	r.lat = summarize(lat)
	var completion []time.Duration
	for _, f := range fanout {
		for _, d := range f {
			if d > 0 {
				completion = append(completion, d)
			}
		}
	}
	r.fanout = summarize(completion)
	if timeline > 0 {
		r.timeline = buildTimeline(timeline, writeStart, writers, fanout)
	}
}
