// Command sluice-bench is a load generator for sluiced. It logs in W writers
// and opens N subscriber streams over HTTP/2 without TLS (h2c), each stream
// on the `user/<id>` record of every writer, waits until every stream is
// synced, then has the writers call UserService.SetAvatarUrl on their own
// profile for a fixed time, in a closed loop or at a fixed aggregate rate.
// It reports the RPC latency, the write→delivery latency measured on every
// stream, and checks that every stream saw every version of every record
// exactly once and in order.
//
// Usage:
//
//	go run ./cmd/sluice-bench -addr http://127.0.0.1:18080 -subscribers 1000 -writers 4 -duration 10s [-rate 20] [-markdown]
//	go run ./cmd/sluice-bench -spawn /tmp/sluiced -spawn-args "--users /tmp/bench-users.yml" \
//	    -user-pattern bench%d -password-pattern bench%d-pass -writers 32 -subscribers 1000
//	go run ./cmd/sluice-bench -write-users-file /tmp/bench-users.yml -n 5000 [-user-pattern bench%d -password-pattern bench%d-pass]
//	go run ./cmd/sluice-bench -spawn /tmp/sluiced -spawn-args "--users /tmp/bench-users.yml" \
//	    -user-pattern bench%d -password-pattern bench%d-pass -streams-per-conn 1 -idle 1000,5000
//
// docs/BENCHMARKS.md has the commands and results of the published runs.
//
// Writers are distinct users: the built-in development users of sluiced
// (userA, userB, userC, admin; so at most 4 writers) unless -user-pattern
// and -password-pattern name users 1..W of a users file, such as one written
// by -write-users-file with cheap argon2id hashes (benchmarks only).
// Subscribers share a small pool of login sessions (-sessions) so that setup
// stays fast; the server treats every stream separately regardless.
//
// Subscriber streams share HTTP/2 connections, -streams-per-conn of them
// each (default 100), as behind a backend or a proxy that multiplexes many
// users. That hides the server's per-connection costs (a socket, buffers,
// goroutines, flow control). -streams-per-conn 1 gives every stream a TCP
// connection of its own, which is what browsers and mobile apps have (one
// connection each): use it to estimate what real clients cost.
//
// Subscriber streams run on the Go client package (client.Subscribe), as a
// backend would: its version cursors drop duplicates, which the bench
// counts (SubscribeOptions.OnDuplicate) instead of receiving them, and a
// stream the client would resume is a stream error here, since a quiet
// resume would hide what the bench measures. Writers and logins call the
// generated clients directly: the client package gives every mutating call
// an idempotency key, which costs the server an idempotency row per write,
// and the bench measures the plain write path.
//
// Each write's avatar URL carries the run id, the writer and a sequence
// number; the writer notes the send time of each sequence number before it
// sends, so a delivery is matched to its write even when it arrives before
// the write's response. Write→delivery latency is the time from just before
// the RPC is sent to just after the stream event is decoded, both on this
// process's monotonic clock. The report also gives, per write, the time
// until the last stream had it, and with -timeline the worst latencies per
// interval of the run, to tell a stall from saturation.
//
// With the server's pid known (-spawn or -server-pid) the report gives the
// server's memory (VmRSS, VmHWM) and CPU, among it the server CPU per
// delivery: the server's user+system CPU time (/proc/<pid>/stat) over the
// write window divided by the live deliveries the streams received in that
// window. The write RPCs the deliveries come from are included; Postgres,
// another process, is not. Without the pid it says n/a.
//
// -idle 1000,5000 measures memory instead of writing (it needs the pid):
// after the logins the bench reads the server's VmRSS with no stream open,
// then opens synced streams on the same records as a write run up to each
// count in turn, lets the server settle for 2 s and reads VmRSS again. It
// reports (RSS at N − RSS with none) / N per idle stream and how long the
// streams took to open, then closes everything. Each login of a
// development user leaves tens of MiB of argon2id garbage in the server
// that the baseline may hold; use the cheap bench users for clean numbers.
// Every connection takes a file on both sides, so the bench raises its
// open-file limit to the hard limit before it spawns the server, which
// inherits it.
//
// The bench refuses a non-loopback -addr unless -allow-remote is given, is
// bounded in time (-duration, -setup-timeout, -drain) and in writes
// (-max-writes), and stops by itself. -spawn starts the server as a child on
// a free loopback port and stops it with SIGTERM at the end. The exit status
// is 0 when every check passed, 1 when a check failed and 2 on an error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is the parsed command line.
type config struct {
	addr           string
	allowRemote    bool
	subscribers    int
	writers        int
	duration       time.Duration
	rate           float64
	userPattern    string
	passPattern    string
	sessions       int
	streamsPerConn int
	subHTTP1       bool
	openParallel   int
	setupTimeout   time.Duration
	drain          time.Duration
	rpcTimeout     time.Duration
	maxWrites      int64
	maxSamples     int64
	serverPID      int
	spawn          string
	spawnArgs      string
	spawnLog       string
	spawnTimeout   time.Duration
	markdown       bool
	timeline       time.Duration
	idle           []int // stream counts of the idle-memory mode; nil: a write run

	writeUsersFile string
	n              int
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("sluice-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "http://127.0.0.1:8080", "base URL of sluiced (h2c); loopback only unless -allow-remote")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a non-loopback -addr")
	fs.IntVar(&c.subscribers, "subscribers", 100, "number of subscriber streams (0..50000)")
	fs.IntVar(&c.writers, "writers", 1, "number of writers, each a distinct user (1..256)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long the writers write (at most 1h)")
	fs.Float64Var(&c.rate, "rate", 0, "aggregate writes per second, spread over the writers; 0 means closed loop")
	fs.StringVar(&c.userPattern, "user-pattern", "", "writer usernames, e.g. bench%d for bench1..benchW; empty: the development users")
	fs.StringVar(&c.passPattern, "password-pattern", "bench%d-pass", "writer passwords, e.g. bench%d-pass")
	fs.IntVar(&c.sessions, "sessions", 20, "login sessions shared by the subscribers (round-robin over the writers' users); sluiced holds at most 1024 streams per session and 4096 per user by default (-max-streams-per-session, -max-streams-per-user)")
	fs.IntVar(&c.streamsPerConn, "streams-per-conn", 100, "subscriber streams per HTTP/2 connection; 1 gives every stream its own TCP connection, as browsers and mobile apps have (one connection each), while multiplexing many hides the server's per-connection costs")
	fs.BoolVar(&c.subHTTP1, "sub-http1", false, "subscriber streams over HTTP/1.1 instead of h2c (one stream per connection: needs -streams-per-conn 1), as a browser reaching the server without TLS uses")
	fs.IntVar(&c.openParallel, "open-parallel", 32, "streams catching up at once during setup")
	fs.DurationVar(&c.setupTimeout, "setup-timeout", 2*time.Minute, "limit for logins and for every stream to be synced (with -idle: for each count)")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after the writes, how long to wait for every stream to reach the final versions")
	fs.DurationVar(&c.rpcTimeout, "rpc-timeout", 10*time.Second, "deadline of each write RPC")
	fs.Int64Var(&c.maxWrites, "max-writes", 1_000_000, "stop writing after this many writes in all")
	fs.Int64Var(&c.maxSamples, "max-samples", 40_000_000, "write→delivery samples kept in all (split evenly over the subscribers)")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pid of sluiced, to report its memory and CPU (set by -spawn)")
	fs.StringVar(&c.spawn, "spawn", "", "path of a sluiced binary to start on a free loopback port for the run (overrides -addr)")
	fs.StringVar(&c.spawnArgs, "spawn-args", "", "extra arguments for the spawned server, split on spaces (no quoting)")
	fs.StringVar(&c.spawnLog, "spawn-log", "", "file for the spawned server's output; default a temporary file")
	fs.DurationVar(&c.spawnTimeout, "spawn-timeout", time.Minute, "how long the spawned server may take to become ready")
	fs.BoolVar(&c.markdown, "markdown", false, "also print a markdown table row")
	fs.DurationVar(&c.timeline, "timeline", 0, "also print the worst latencies per interval of send time, e.g. 1s, to spot stalls; 0 means off")
	idle := fs.String("idle", "", "measure the server's memory per idle stream instead of writing: comma-separated ascending stream counts, e.g. 1000,5000 (needs -spawn or -server-pid)")
	fs.StringVar(&c.writeUsersFile, "write-users-file", "", "write a users file of -n bench users with cheap hashes to this path and exit")
	fs.IntVar(&c.n, "n", 1000, "number of users for -write-users-file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sluice-bench [flags]   (see `go doc ./cmd/sluice-bench`)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.writeUsersFile != "" {
		if c.userPattern == "" {
			c.userPattern = "bench%d"
		}
		return c, nil
	}
	switch {
	case c.subscribers < 0 || c.subscribers > 50_000:
		return nil, errors.New("-subscribers: want 0..50000")
	case c.writers < 1 || c.writers > 256:
		return nil, errors.New("-writers: want 1..256 (a stream names at most 256 records)")
	case c.duration <= 0 || c.duration > time.Hour:
		return nil, errors.New("-duration: want more than 0 and at most 1h")
	case c.rate < 0 || c.rate > 100_000:
		return nil, errors.New("-rate: want 0..100000")
	case c.sessions < 1 || c.sessions > 10_000:
		return nil, errors.New("-sessions: want 1..10000")
	case c.streamsPerConn < 1 || c.streamsPerConn > 1000:
		return nil, errors.New("-streams-per-conn: want 1..1000")
	case c.subHTTP1 && c.streamsPerConn != 1:
		return nil, errors.New("-sub-http1: HTTP/1.1 carries one stream per connection; add -streams-per-conn 1")
	case c.openParallel < 1 || c.openParallel > 1000:
		return nil, errors.New("-open-parallel: want 1..1000")
	case c.setupTimeout <= 0 || c.setupTimeout > 30*time.Minute:
		return nil, errors.New("-setup-timeout: want more than 0 and at most 30m")
	case c.drain < 0 || c.drain > 5*time.Minute:
		return nil, errors.New("-drain: want 0..5m")
	case c.rpcTimeout <= 0 || c.rpcTimeout > time.Minute:
		return nil, errors.New("-rpc-timeout: want more than 0 and at most 1m")
	case c.maxWrites < 1 || c.maxWrites > 10_000_000:
		return nil, errors.New("-max-writes: want 1..10000000")
	case c.maxSamples < 1 || c.maxSamples > 200_000_000:
		return nil, errors.New("-max-samples: want 1..200000000")
	case c.timeline < 0 || c.timeline > 0 && c.duration/c.timeline > 10_000:
		return nil, errors.New("-timeline: want 0 (off) or an interval giving at most 10000 lines")
	case c.spawnTimeout <= 0 || c.spawnTimeout > 10*time.Minute:
		return nil, errors.New("-spawn-timeout: want more than 0 and at most 10m")
	}
	if *idle != "" {
		var err error
		if c.idle, err = parseIdle(*idle); err != nil {
			return nil, err
		}
		if c.spawn == "" && c.serverPID <= 0 {
			return nil, errors.New("-idle reads the server's memory: give -spawn or -server-pid")
		}
	}
	if c.spawn == "" {
		if err := checkTarget(c.addr, c.allowRemote); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// report is what a run of either mode prints.
type report interface {
	writeSummary(w io.Writer)
	writeMarkdown(w io.Writer)
	ok() bool
}

// run runs the command with args (args[0] is the program name) and returns
// the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args[1:], stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench:", err)
		return 2
	}
	if cfg.writeUsersFile != "" {
		if err := writeUsersFile(cfg.writeUsersFile, cfg.n, cfg.userPattern, cfg.passPattern); err != nil {
			fmt.Fprintln(stderr, "sluice-bench:", err)
			return 2
		}
		fmt.Fprintf(stdout, "wrote %d users (%s / %s, cheap argon2id hashes) to %s\n",
			cfg.n, cfg.userPattern, cfg.passPattern, cfg.writeUsersFile)
		return 0
	}
	// The program name, not the path `go run` builds to.
	command := shellJoin(append([]string{"sluice-bench"}, args[1:]...))
	// A hard bound on the whole run, whatever the server does.
	var (
		res   report
		limit time.Duration
		do    func(ctx context.Context) (report, error)
	)
	if cfg.idle != nil {
		limit = cfg.spawnTimeout + time.Duration(len(cfg.idle)+1)*(cfg.setupTimeout+idleSettle) + time.Minute
		do = func(ctx context.Context) (report, error) {
			r, err := idle(ctx, cfg, command, stderr)
			if err != nil {
				return nil, err
			}
			return r, nil
		}
	} else {
		limit = cfg.spawnTimeout + 2*cfg.setupTimeout + cfg.duration + cfg.rpcTimeout + cfg.drain + time.Minute
		do = func(ctx context.Context) (report, error) {
			r, err := bench(ctx, cfg, command, stderr)
			if err != nil {
				return nil, err // not a nil *result in a non-nil report
			}
			return r, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err = do(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sluice-bench:", err)
		return 2
	}
	res.writeSummary(stdout)
	if cfg.markdown {
		fmt.Fprintln(stdout)
		res.writeMarkdown(stdout)
	}
	if !res.ok() {
		return 1
	}
	return 0
}

// progressTo returns a function that logs a progress line to w.
func progressTo(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		fmt.Fprintf(w, "sluice-bench: "+format+"\n", args...)
	}
}

// newRunInfo describes a run about to start against cfg's server.
func newRunInfo(cfg *config, command string) runInfo {
	return runInfo{
		date:      time.Now(),
		command:   command,
		machine:   readMachine(),
		base:      cfg.addr,
		serverPID: cfg.serverPID,
	}
}

// startServer spawns the server when cfg.spawn is set, first raising the
// open-file limit, which the server inherits, for conns connections, and
// records where the server runs in info. The returned stop is never nil.
func startServer(ctx context.Context, cfg *config, conns int, info *runInfo, progress func(string, ...any)) (stop func(), err error) {
	if err := ensureFiles(conns); err != nil {
		return func() {}, err
	}
	if cfg.spawn == "" {
		if limit, ok := serverFileLimit(info.serverPID); ok && limit < uint64(conns)+fileHeadroom {
			progress("warning: the server (pid %d) may open only %d files, too few for %d connections", info.serverPID, limit, conns)
		}
		return func() {}, nil
	}
	progress("starting %s", cfg.spawn)
	srv, err := spawn(ctx, cfg.spawn, strings.Fields(cfg.spawnArgs), cfg.spawnLog, cfg.spawnTimeout)
	if err != nil {
		return func() {}, err
	}
	info.base, info.serverPID, info.serverLog = srv.base, srv.pid(), srv.logPath
	progress("server ready at %s (pid %d, log %s)", srv.base, srv.pid(), srv.logPath)
	return func() {
		if serr := srv.stop(20 * time.Second); serr != nil {
			progress("stop server: %v (log %s)", serr, srv.logPath)
		}
	}, nil
}

// targets are the logged-in writers, the sessions the subscribers share
// and the records every stream watches: user/<id> of each writer.
type targets struct {
	writers  []session
	sessions []session
	keys     []string
	keyIx    map[string]int
}

// loginTargets logs in the writers, which must be distinct users, puts them
// into one organization so that each may read the others' profiles, and
// logs in nSessions subscriber sessions round-robin over the same users.
func loginTargets(ctx context.Context, hc *http.Client, base string, creds []cred, nSessions int) (*targets, error) {
	writerSess, err := loginAll(ctx, hc, base, creds)
	if err != nil {
		return nil, err
	}
	if err := shareOrg(ctx, hc, base, writerSess); err != nil {
		return nil, err
	}
	subCreds := make([]cred, nSessions)
	for i := range subCreds {
		subCreds[i] = creds[i%len(creds)]
	}
	subSess, err := loginAll(ctx, hc, base, subCreds)
	if err != nil {
		return nil, err
	}
	t := &targets{writers: writerSess, sessions: subSess, keyIx: make(map[string]int, len(writerSess))}
	for i, s := range writerSess {
		key := "user/" + s.userID
		if j, dup := t.keyIx[key]; dup {
			return nil, fmt.Errorf("writers %d and %d are the same user %q; writers must be distinct users", j, i, s.userID)
		}
		t.keyIx[key] = i
		t.keys = append(t.keys, key)
	}
	return t, nil
}

// bench performs one write run. Progress goes to logw.
func bench(ctx context.Context, cfg *config, command string, logw io.Writer) (_ *result, err error) {
	progress := progressTo(logw)
	res := &result{
		runInfo:        newRunInfo(cfg, command),
		subscribers:    cfg.subscribers,
		writers:        cfg.writers,
		streamsPerConn: cfg.streamsPerConn,
		subHTTP1:       cfg.subHTTP1,
		rate:           cfg.rate,
		duration:       cfg.duration,
		drain:          cfg.drain,
		budget:         cfg.maxWrites,
		serverCPU:      -1,
		benchCPU:       -1,
		serverCPUTime:  -1,
	}
	epoch := res.date
	creds, err := writerCreds(cfg.writers, cfg.userPattern, cfg.passPattern)
	if err != nil {
		return nil, err
	}
	runID, err := newRunID()
	if err != nil {
		return nil, err
	}
	// The subscribers' connections, the writers' and the setup one.
	conns := (cfg.subscribers+cfg.streamsPerConn-1)/cfg.streamsPerConn + cfg.writers + 1
	stopServer, err := startServer(ctx, cfg, conns, &res.runInfo, progress)
	defer stopServer()
	if err != nil {
		return nil, err
	}
	base := res.base

	var cl clients
	defer cl.close()
	setupCtx, cancelSetup := context.WithTimeout(ctx, cfg.setupTimeout)
	defer cancelSetup()

	// Log in the writers, then the subscribers' shared sessions.
	setupHC, err := cl.newClient(setupCtx, base, false)
	if err != nil {
		return nil, err
	}
	progress("logging in %d writers and %d subscriber sessions", cfg.writers, min(cfg.sessions, cfg.subscribers))
	tg, err := loginTargets(setupCtx, setupHC, base, creds, min(cfg.sessions, cfg.subscribers))
	if err != nil {
		return nil, err
	}
	res.sessions = len(tg.sessions)
	logs := make([]*sendLog, len(tg.keys))
	writers := make([]*writer, len(tg.keys))
	for i, s := range tg.writers {
		logs[i] = &sendLog{}
		writers[i] = &writer{index: i, sess: s, key: tg.keys[i], log: logs[i]}
		res.writerNames = append(res.writerNames, s.userID)
	}

	// Open the streams, a bounded number catching up at once, and wait
	// until each has sent Synced.
	progress("opening %d streams on %d records, at most %d per connection", cfg.subscribers, len(tg.keys), cfg.streamsPerConn)
	streams := newStreamSet(ctx, &cl, streamParams{
		base:         base,
		epoch:        epoch,
		run:          runID,
		sessions:     tg.sessions,
		keys:         tg.keys,
		keyIx:        tg.keyIx,
		logs:         logs,
		perConn:      cfg.streamsPerConn,
		http1:        cfg.subHTTP1,
		samples:      int(cfg.maxSamples / int64(max(cfg.subscribers, 1))),
		parallel:     cfg.openParallel,
		setupTimeout: cfg.setupTimeout,
	})
	defer streams.stop()
	setupStart := time.Now()
	if err := streams.grow(setupCtx, cfg.subscribers); err != nil {
		return nil, err
	}
	subs := streams.subs
	res.setup = time.Since(setupStart)
	res.conns = cl.open.Load()
	res.memSetup = readMemory(res.serverPID)
	syncTimes := make([]time.Duration, 0, len(subs))
	for _, s := range subs {
		syncTimes = append(syncTimes, s.syncTime) // written before Synced was counted
	}
	res.syncLat = summarize(syncTimes)
	progress("%d streams synced in %s", cfg.subscribers, res.setup.Round(time.Millisecond))

	// Write.
	var budget atomic.Int64
	budget.Store(cfg.maxWrites)
	p := writeParams{run: runID, epoch: epoch, timeout: cfg.rpcTimeout, budget: &budget}
	if cfg.rate > 0 {
		p.interval = time.Duration(float64(cfg.writers) / cfg.rate * float64(time.Second))
		p.offset = time.Duration(float64(time.Second) / cfg.rate)
	}
	writerHC := make([]*http.Client, len(writers))
	for i := range writerHC {
		if writerHC[i], err = cl.newClient(ctx, base, false); err != nil {
			return nil, err
		}
	}
	progress("writing for %s (%s)", cfg.duration, res.mode())
	serverPID := strconv.Itoa(res.serverPID)
	serverCPU0, serverOK0 := cpuTime(serverPID)
	live0 := liveDeliveries(subs)
	benchCPU0, benchOK0 := cpuTime("self")
	stop, cancelStop := context.WithTimeout(ctx, cfg.duration)
	writeStart := time.Now()
	var writeWG sync.WaitGroup
	for i, w := range writers {
		writeWG.Add(1)
		go func() {
			defer writeWG.Done()
			w.run(ctx, stop, writerHC[i], base, p)
		}()
	}
	writeWG.Wait()
	cancelStop()
	res.writeElapsed = time.Since(writeStart)
	res.windowDeliveries = liveDeliveries(subs) - live0
	if serverCPU1, ok := cpuTime(serverPID); ok && serverOK0 && res.serverPID > 0 {
		res.serverCPUTime = serverCPU1 - serverCPU0
		res.serverCPU = float64(res.serverCPUTime) / float64(res.writeElapsed)
	}
	if benchCPU1, ok := cpuTime("self"); ok && benchOK0 {
		res.benchCPU = float64(benchCPU1-benchCPU0) / float64(res.writeElapsed)
	}
	res.budgetHit = budget.Load() < 0
	final := res.addWrites(writers)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// Wait for every stream to reach the final version of every record.
	progress("%d writes done; waiting up to %s for every stream to reach the final versions", res.writes, cfg.drain)
	drainStart := time.Now()
	for short(subs, final) > 0 && time.Since(drainStart) < cfg.drain && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	res.drained = time.Since(drainStart)
	streams.stop()
	res.memEnd = readMemory(res.serverPID)
	res.dials = cl.dials.Load()

	// Every subscriber goroutine has returned: their fields are ours now.
	res.addStreams(subs, writers, final, writeStart.Sub(epoch), cfg.streamsPerConn, cfg.timeline)
	return res, nil
}

// loginAll logs in every credential, a few users at a time but one login
// of a user after another: the server charges a login attempt to the user
// before it checks the password and refunds it on success, so concurrent
// logins of one user could exceed its burst.
func loginAll(ctx context.Context, hc *http.Client, base string, creds []cred) ([]session, error) {
	out := make([]session, len(creds))
	errs := make([]error, len(creds))
	byUser := map[string][]int{}
	var users []string
	for i, c := range creds {
		if _, seen := byUser[c.username]; !seen {
			users = append(users, c.username)
		}
		byUser[c.username] = append(byUser[c.username], i)
	}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, i := range byUser[u] {
				if out[i], errs[i] = login(ctx, hc, base, creds[i]); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// short counts the subscriber×key pairs below the final versions.
func short(subs []*subscriber, final []int64) int {
	n := 0
	for _, s := range subs {
		for i := range final {
			if s.last[i].Load() < final[i] {
				n++
			}
		}
	}
	return n
}

// firstSubErr returns the first recorded subscriber error. Call it only
// after every subscriber goroutine has returned.
func firstSubErr(subs []*subscriber) error {
	for _, s := range subs {
		if s.err != nil {
			return fmt.Errorf("%d: %w", s.index, s.err)
		}
	}
	return errors.New("unknown error")
}

func newRunID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("run id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// shellJoin renders args as a command line a POSIX shell reads back the
// same way.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,%+@", r))
		}) {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}
