package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
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

// procField reads a "Name:   123 kB" line of a /proc status-like file.
func procField(path, name string) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

// memory is a process's resident set: now and at its peak, in bytes; -1
// when unknown.
type memory struct {
	rss, hwm int64
}

func readMemory(pid int) memory {
	m := memory{rss: -1, hwm: -1}
	if pid <= 0 {
		return m
	}
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	if kb, ok := procField(path, "VmRSS"); ok {
		m.rss = kb << 10
	}
	if kb, ok := procField(path, "VmHWM"); ok {
		m.hwm = kb << 10
	}
	return m
}

// cpuTime returns the user+system CPU time a process has used so far, from
// /proc/<pid>/stat ("self" for this process); ok is false if unknown.
func cpuTime(pid string) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces; fields resume after its ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(ut+st) * time.Second / userHZ, true
}

// result is everything one run measured.
type result struct {
	date    time.Time
	command string
	machine machine

	base      string
	serverPID int
	serverLog string // set when spawned

	subscribers, writers, sessions int
	streamsPerConn                 int
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
	unmatched, unexpected, heartbeats  int64
	notFinal                           int   // subscriber×key pairs short of the final version
	notFinalVersions                   int64 // versions those pairs lack
	drained                            time.Duration
	streamErrs                         int
	firstStreamErr                     error

	memSetup, memEnd    memory
	serverCPU, benchCPU float64 // cores used on average while writing; <0 unknown
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

func cores(c float64) string {
	if c < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f cores", c)
}

// writeSummary prints the human-readable report.
func (r *result) writeSummary(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "sluice-bench  %s\n", r.date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine   %d CPUs (%s), %s RAM, load %s, %s %s/%s\n", m.cpus, m.model, mib(m.memTotal), m.load, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "command   %s\n", r.command)
	server := r.base
	if r.serverLog != "" {
		server += fmt.Sprintf(" (spawned, pid %d, log %s)", r.serverPID, r.serverLog)
	} else if r.serverPID > 0 {
		server += fmt.Sprintf(" (pid %d)", r.serverPID)
	}
	fmt.Fprintf(w, "server    %s\n", server)
	fmt.Fprintf(w, "setup     %d subscribers sharing %d login sessions, at most %d streams per HTTP/2 connection (%d TCP connections open after setup; %d dialed in all, writers included); all synced in %s (subscribe→synced p50 %s, p99 %s, max %s)\n",
		r.subscribers, r.sessions, r.streamsPerConn, r.conns, r.dials, r.setup.Round(time.Millisecond), ms(r.syncLat.p50), ms(r.syncLat.p99), ms(r.syncLat.max))
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
const markdownHeader = `| subscribers | writers | mode | duration | writes | writes/s | RPC p50 | RPC p99 | write→delivery p50 | p99 | max | deliveries | deliveries/s | missed | duplicate | server RSS end / peak |
| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`

// writeMarkdown prints the table header and this run's row.
func (r *result) writeMarkdown(w io.Writer) {
	mode := "closed loop"
	if r.rate > 0 {
		mode = fmt.Sprintf("%g/s", r.rate)
	}
	fmt.Fprintln(w, markdownHeader)
	fmt.Fprintf(w, "| %d | %d | %s | %s | %d | %.0f | %s | %s | %s | %s | %s | %d | %.0f | %d | %d | %s / %s |\n",
		r.subscribers, r.writers, mode, r.duration, r.writes, perSecond(r.writes, r.writeElapsed),
		ms(r.rpc.p50), ms(r.rpc.p99), ms(r.lat.p50), ms(r.lat.p99), ms(r.lat.max),
		r.deliveries, perSecond(r.deliveries, r.deliverySpan), r.missed+r.missedCoalesced, r.duplicate,
		mib(r.memEnd.rss), mib(r.memEnd.hwm))
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
		r.heartbeats += s.heartbeats
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
