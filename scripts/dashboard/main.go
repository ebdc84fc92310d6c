// Command dashboard renders the key panels of the Grafana dashboard
// (docs/grafana-sluice.json) as one SVG, for docs/OPERATIONS.md, where no
// Grafana is at hand: it starts sluiced with an ops listener, runs a few
// phases of load against it with sluice-bench, scrapes /metrics every
// second meanwhile, and draws the panels' queries over the scrapes (rates
// and histogram quantiles over a 5 s window, computed here as PromQL
// would).
//
//	go run ./scripts/dashboard -out docs/img/dashboard.svg
//
// It builds sluiced and sluice-bench from this checkout, runs sluiced with
// the development users on a scratch database it creates on the Postgres
// server of -postgres (and drops afterwards), and takes about two minutes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

// phase is one step of the load: a sluice-bench run, or a pause.
type phase struct {
	label string
	args  []string // sluice-bench arguments; nil: a pause
	pause time.Duration
}

// phases is the load the rendering shows: streams opening, writes at a
// fixed rate, a pause, more streams and writers in a closed loop.
var phases = []phase{
	{label: "idle", pause: 5 * time.Second},
	{label: "300 streams, 40 writes/s", args: []string{"-subscribers", "300", "-writers", "2", "-rate", "40", "-duration", "20s"}},
	{label: "idle", pause: 5 * time.Second},
	{label: "1000 streams, closed loop", args: []string{"-subscribers", "1000", "-writers", "4", "-duration", "20s"}},
	{label: "idle", pause: 5 * time.Second},
}

func run(args []string) error {
	fs := flag.NewFlagSet("dashboard", flag.ContinueOnError)
	out := fs.String("out", "docs/img/dashboard.svg", "SVG file to write")
	pgURL := fs.String("postgres", "postgres://127.0.0.1:5432/postgres?sslmode=disable", "a Postgres server (any database of it) on which to create, and afterwards drop, a scratch database for the run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dbURL, drop, err := scratchDatabase(ctx, *pgURL)
	if err != nil {
		return err
	}
	defer drop()
	tmp, err := os.MkdirTemp("", "sluice-dashboard-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, b := range []string{"sluiced", "sluice-bench"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(tmp, b), "./cmd/"+b)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b, err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	opsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(tmp, "sluiced.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	srv := exec.Command(filepath.Join(tmp, "sluiced"), "serve", "-addr", addr, "-ops-addr", opsAddr, "-database-url", dbURL)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start sluiced: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}()
	opsURL := "http://" + opsAddr
	if err := waitReady(ctx, opsURL, time.Minute); err != nil {
		log, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%w; its log:\n%s", err, log)
	}

	rec := newRecorder(opsURL, time.Second)
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	defer stopScrape()
	scraped := make(chan error, 1)
	go func() { scraped <- rec.run(scrapeCtx) }()
	var marks []mark
	for _, p := range phases {
		start := time.Since(rec.start)
		fmt.Fprintf(os.Stderr, "dashboard: %s\n", p.label)
		if p.args == nil {
			if err := sleep(ctx, p.pause); err != nil {
				return err
			}
		} else {
			bench := exec.CommandContext(ctx, filepath.Join(tmp, "sluice-bench"), append([]string{"-addr", "http://" + addr}, p.args...)...)
			bench.Stdout, bench.Stderr = os.Stderr, os.Stderr
			if err := bench.Run(); err != nil {
				return fmt.Errorf("sluice-bench %s: %w", strings.Join(p.args, " "), err)
			}
		}
		marks = append(marks, mark{label: p.label, from: start, to: time.Since(rec.start)})
	}
	stopScrape()
	if err := <-scraped; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	svg := render(rec.samples, marks, panels(), machine())
	if err := os.WriteFile(*out, []byte(svg), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "dashboard: %d scrapes, wrote %s\n", len(rec.samples), *out)
	return nil
}

// machine describes the host: CPUs and the load average at the end (the
// server, Postgres and the bench share it).
func machine() string {
	load, _ := os.ReadFile("/proc/loadavg")
	avg := strings.Fields(string(load))
	if len(avg) == 0 {
		avg = []string{"n/a"}
	}
	return fmt.Sprintf("sluiced, Postgres and the bench on %d CPUs, load average %s", runtime.NumCPU(), avg[0])
}

// scratchDatabase creates a fresh database on the server of url for one
// run and returns its URL and a function that drops it (call it after the
// server stopped).
func scratchDatabase(ctx context.Context, url string) (string, func(), error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "", nil, fmt.Errorf("-postgres: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return "", nil, fmt.Errorf("connect to postgres: %w", err)
	}
	name := fmt.Sprintf("sluice_dashboard_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		conn.Close(ctx)
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			fmt.Fprintln(os.Stderr, "dashboard: drop scratch database:", err)
		}
	}
	return withDatabase(url, name), drop, nil
}

// withDatabase returns url with its database replaced by name.
func withDatabase(url, name string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	u.Path = "/" + name
	return u.String()
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, base string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sluiced not ready after %s", limit)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
