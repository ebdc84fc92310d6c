// Package devpg starts a private PostgreSQL cluster for development and tests,
// using the PostgreSQL server binaries (initdb, pg_ctl, postgres) installed on
// the machine.
//
// The cluster lives entirely in one directory, which is the PostgreSQL data
// directory: it also holds the server log (postgres.log) and the unix socket.
// The server listens on that socket and on 127.0.0.1 at a free TCP port, with
// trust authentication for the superuser "sluice", and has a database named
// "sluice".
//
// Several processes may use one cluster: Start reuses a server already
// running from the directory, and Stop stops the server only when the
// last process using it lets go (see users.go); a process that crashed
// holds nothing. The lock and the users' registrations live next to the
// data directory (<dir>.lock, <dir>.users/).
//
// PostgreSQL refuses to run as root. When the calling process runs as root,
// initdb, pg_ctl and postgres are run as the unprivileged user "postgres" (or
// "nobody" if that does not exist), and the data directory is owned by that
// user. Every parent directory of the data directory must then be searchable
// by that user; a directory under a 0700 parent such as /root is therefore
// rejected with an error before anything is created there.
package devpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// superuser is the role initdb creates; trust auth means no password.
	superuser = "sluice"
	// database is the database Start makes sure exists.
	database = "sluice"
	// logName is the server log inside the data directory.
	logName = "postgres.log"
	// pidName is the postmaster lock file inside the data directory.
	pidName = "postmaster.pid"
	// startAttempts bounds retries when the chosen port is taken.
	startAttempts = 3
	// maxSocketPath is the usable length of sockaddr_un.sun_path on Linux.
	maxSocketPath = 107
	// sqlstateDuplicateDatabase is duplicate_database.
	sqlstateDuplicateDatabase = "42P04"
	// logTailBytes is how much of postgres.log goes into start errors.
	logTailBytes = 4096
)

// pickPort chooses the port for a new server; a variable so tests can force
// a port collision.
var pickPort = freePort

// requiredBinaries are the programs FindBinDir looks for.
var requiredBinaries = []string{"initdb", "pg_ctl", "postgres"}

// Cluster is one process's use of a private PostgreSQL server, which Start
// started or found already running. The caller must call Stop, which stops
// the server only if no other process still uses it. URL is safe for
// concurrent use; Stop may be called more than once.
type Cluster struct {
	dir    string // absolute data directory
	binDir string
	port   int
	runAs  *osUser // nil unless the process runs as root
	log    *slog.Logger

	mu      sync.Mutex
	stopped bool
	reg     *registration // this Cluster's entry in usersDir; nil once released
}

// osUser is the unprivileged account the server runs as when we are root.
type osUser struct {
	name     string
	uid, gid uint32
}

// Start initialises (first time only) and starts a PostgreSQL cluster whose
// data directory is dir (e.g. "./.sluice/pg"), and returns it once it accepts
// connections and the database "sluice" exists.
//
// The server listens only on a unix socket in dir and on 127.0.0.1 at a free
// TCP port, with trust authentication. Start is idempotent across restarts of
// the process: an existing data directory is reused, a server already running
// from dir is reused (its port is read from postmaster.pid), and a stale
// postmaster.pid left by a crashed run is handled by pg_ctl. When the process
// runs as root the server runs as the user "postgres" (or "nobody"), dir is
// chowned to that user, and Start fails with a clear error if that user cannot
// reach dir. log may be nil, in which case nothing is logged.
func Start(ctx context.Context, dir string, log *slog.Logger) (*Cluster, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// postgres puts its socket at <dir>/.s.PGSQL.<port>; fail early and
	// clearly rather than with an obscure bind error.
	if n := len(abs) + len("/.s.PGSQL.65535"); n > maxSocketPath {
		return nil, fmt.Errorf("data dir %s: path too long for a unix socket (%d > %d bytes)", abs, n, maxSocketPath)
	}
	if strings.Contains(abs, ",") {
		// -k takes a comma-separated list of socket directories.
		return nil, fmt.Errorf("data dir %s: path must not contain a comma", abs)
	}

	c := &Cluster{dir: abs, binDir: binDir, log: log.With("pgdata", abs)}
	if os.Geteuid() == 0 {
		if c.runAs, err = unprivilegedUser(); err != nil {
			return nil, err
		}
	}
	if err := c.prepareDir(ctx); err != nil {
		return nil, err
	}
	started, err := c.startOrReuse(ctx)
	if err != nil {
		return nil, err
	}

	if err := c.ensureDatabase(ctx); err != nil {
		if !started {
			err = fmt.Errorf("server from %s (port %d): %w", pidName, c.port, err)
		}
		// Unregister; a server this call started, and that nobody else
		// has come to use, is stopped rather than left behind.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if stopErr := c.release(stopCtx, started); stopErr != nil {
			c.log.Warn("devpg: stop after failed start", "err", stopErr)
		}
		cancel()
		return nil, err
	}
	return c, nil
}

// startOrReuse initialises the cluster if needed, starts the server
// unless it is running, and registers c as one of its users, all under
// the cluster lock. started reports whether this call started the server.
func (c *Cluster) startOrReuse(ctx context.Context) (started bool, err error) {
	unlock, err := c.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	if err := c.initdb(ctx); err != nil {
		return false, err
	}
	running, err := c.isRunning(ctx)
	if err != nil {
		return false, err
	}
	if running {
		if c.port, err = c.pidFilePort(); err != nil {
			return false, err
		}
		c.log.Info("devpg: reusing running postgres", "port", c.port)
	} else {
		if err := c.start(ctx); err != nil {
			return false, err
		}
		started = true
	}
	c.otherUsers() // drops the registrations of processes that are gone
	if err := c.register(); err != nil {
		if started {
			if _, stopErr := c.run(ctx, "pg_ctl", "stop", "-D", c.dir, "-m", "fast", "-w"); stopErr != nil {
				c.log.Warn("devpg: stop after failed registration", "err", stopErr)
			}
		}
		return false, err
	}
	return started, nil
}

// URL returns a postgres:// connection URL for the "sluice" database on
// 127.0.0.1 at the cluster's port, as the superuser "sluice" created by
// initdb (no password; trust auth), with sslmode=disable.
func (c *Cluster) URL() string {
	return c.urlFor(database)
}

func (c *Cluster) urlFor(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop ends this Cluster's use of the server. The server itself is
// stopped ("pg_ctl stop -m fast", waiting until it has exited) only when
// no other live process, nor another Cluster of this process, uses it:
// a second process that reused a running server (`sluiced seed`, a second
// `sluiced serve`) leaves it running for the first. Calling Stop again,
// or on a server that is no longer running, is a no-op returning nil.
func (c *Cluster) Stop(ctx context.Context) error {
	return c.release(ctx, true)
}

// release unregisters c and, if stopServer and no other user remains,
// stops the server.
func (c *Cluster) release(ctx context.Context, stopServer bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	c.unregister()
	if others := c.otherUsers(); len(others) > 0 {
		c.log.Info("devpg: leaving postgres running for its other users", "port", c.port, "pids", others)
		c.stopped = true
		return nil
	}
	if !stopServer {
		c.stopped = true
		return nil
	}
	c.log.Info("devpg: stopping postgres", "port", c.port)
	out, err := c.run(ctx, "pg_ctl", "stop", "-D", c.dir, "-m", "fast", "-w")
	if err != nil {
		if ctx.Err() == nil {
			if running, statusErr := c.isRunning(ctx); statusErr == nil && !running {
				// Already stopped or crashed, leaving a stale
				// postmaster.pid.
				c.stopped = true
				return nil
			}
		}
		return fmt.Errorf("pg_ctl stop: %w%s", err, formatOutput(out))
	}
	c.stopped = true
	return nil
}

// Restart restarts the server with "pg_ctl restart -m mode" on the same port
// and options, and returns once it accepts connections again. mode is
// "smart", "fast" (sessions are terminated, a shutdown checkpoint is
// written) or "immediate" (the server is killed without a checkpoint: the
// start runs crash recovery). Fault tests use it; clients see their
// connections drop and connection refused until the server is back.
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	switch mode {
	case "smart", "fast", "immediate":
	default:
		return fmt.Errorf("pg_ctl restart: unknown mode %q (want smart, fast or immediate)", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pg_ctl restart: the cluster was stopped")
	}
	c.log.Info("devpg: restarting postgres", "port", c.port, "mode", mode)
	logPath := filepath.Join(c.dir, logName)
	// Without -o, pg_ctl restarts with the options of the last start
	// (postmaster.opts): the same port and socket directory. -l keeps the
	// server's output out of our pipe.
	out, err := c.run(ctx, "pg_ctl", "restart", "-D", c.dir, "-m", mode, "-w", "-l", logPath)
	if err != nil {
		return fmt.Errorf("pg_ctl restart -m %s: %w%s\n%s tail:\n%s", mode, err, formatOutput(out), logName, logTail(logPath))
	}
	conn, err := c.connect(ctx, database)
	if err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	return conn.Close(context.WithoutCancel(ctx))
}

// FindBinDir returns the directory holding the PostgreSQL server programs
// initdb, pg_ctl and postgres: the first directory in $PATH containing all
// three, else the newest /usr/lib/postgresql/<version>/bin containing all
// three. The error names what was looked for if none is found.
func FindBinDir() (string, error) {
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if d == "" {
			continue
		}
		if hasBinaries(d) {
			return d, nil
		}
	}
	const pattern = "/usr/lib/postgresql/*/bin"
	matches, _ := filepath.Glob(pattern) // only ErrBadPattern, impossible here
	sort.Slice(matches, func(i, j int) bool {
		return versionLess(filepath.Base(filepath.Dir(matches[j])), filepath.Base(filepath.Dir(matches[i])))
	})
	for _, d := range matches {
		if hasBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("find postgres binaries: no directory with %s in $PATH or %s",
		strings.Join(requiredBinaries, ", "), pattern)
}

func hasBinaries(dir string) bool {
	for _, name := range requiredBinaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// versionLess compares dotted numeric versions ("9.6" < "15" < "16").
// Non-numeric parts compare as 0.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) || i < len(bs); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return a < b
}

// unprivilegedUser finds the account to run PostgreSQL as when we are root.
func unprivilegedUser() (*osUser, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &osUser{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, errors.New(`running as root: postgres refuses to run as root and no unprivileged user "postgres" or "nobody" exists`)
}

// prepareDir creates the data directory (0700; parents 0755) and, when
// running as root, checks the server user can reach it and hands it over.
func (c *Cluster) prepareDir(ctx context.Context) error {
	if c.runAs != nil {
		// Check before creating anything that the server user can get to
		// the deepest existing ancestor.
		existing := c.dir
		for {
			if _, err := os.Stat(existing); err == nil {
				break
			}
			parent := filepath.Dir(existing)
			if parent == existing {
				break
			}
			existing = parent
		}
		if err := c.checkAccess(ctx, existing); err != nil {
			return err
		}
	}

	if err := mkdirParents(filepath.Dir(c.dir)); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(c.dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s: not a directory", c.dir)
	}
	if c.runAs != nil {
		if err := chownTree(c.dir, c.runAs.uid, c.runAs.gid); err != nil {
			return fmt.Errorf("data dir: chown to %s: %w", c.runAs.name, err)
		}
	}
	if err := os.Chmod(c.dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if c.runAs != nil {
		return c.checkAccess(ctx, c.dir)
	}
	return nil
}

// checkAccess runs a harmless command as the server user with its working
// directory set to dir, which fails exactly when that user cannot reach dir
// (the child changes directory after dropping privileges).
func (c *Cluster) checkAccess(ctx context.Context, dir string) error {
	cmd := c.command(ctx, "pg_ctl", "--version")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("data dir %s: running as root, so postgres runs as user %q, which cannot access %s "+
			"(every parent directory must be searchable by it, e.g. chmod o+x, or use a directory outside /root): %w%s",
			c.dir, c.runAs.name, dir, err, formatOutput(string(out)))
	}
	return nil
}

// mkdirParents is os.MkdirAll(dir, 0755) but with the mode applied regardless
// of umask to the directories it creates, so an unprivileged server user can
// traverse them.
func mkdirParents(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirParents(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(dir, 0o755)
}

// chownTree gives everything under root to uid:gid, touching only entries
// that need it.
func chownTree(root string, uid, gid uint32) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // e.g. a socket removed meanwhile
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == uid && st.Gid == gid {
			return nil
		}
		if err := os.Lchown(p, int(uid), int(gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
}

// initdb initialises the data directory unless it already holds a cluster.
func (c *Cluster) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(c.dir, "PG_VERSION")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("initdb: %w", err)
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("initdb: %s is not empty and is not a postgres data directory (no PG_VERSION)", c.dir)
	}
	c.log.Info("devpg: initialising cluster", "bindir", c.binDir)
	out, err := c.run(ctx, "initdb", "-D", c.dir, "-A", "trust", "-U", superuser,
		"--no-sync", "-E", "UTF8", "--locale=C")
	if err != nil {
		return fmt.Errorf("initdb: %w%s", err, formatOutput(out))
	}
	return nil
}

// isRunning reports whether a server is running from the data directory.
func (c *Cluster) isRunning(ctx context.Context) (bool, error) {
	if _, err := os.Stat(filepath.Join(c.dir, pidName)); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	out, err := c.run(ctx, "pg_ctl", "status", "-D", c.dir)
	if err == nil {
		return true, nil
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 3 { // 3: not running (stale pid file)
		return false, nil
	}
	return false, fmt.Errorf("pg_ctl status: %w%s", err, formatOutput(out))
}

// pidFilePort reads the port from line 4 of postmaster.pid.
func (c *Cluster) pidFilePort() (int, error) {
	f, err := os.Open(filepath.Join(c.dir, pidName))
	if err != nil {
		return 0, fmt.Errorf("read port: %w", err)
	}
	defer f.Close()
	return parsePidFilePort(f)
}

func parsePidFilePort(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		if line != 4 {
			continue
		}
		port, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil || port <= 0 || port > 65535 {
			return 0, fmt.Errorf("read port: bad port line %q in %s", sc.Text(), pidName)
		}
		return port, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read port: %w", err)
	}
	return 0, fmt.Errorf("read port: %s has no port line", pidName)
}

// start starts the server on a free port, retrying with a new port if the
// chosen one was taken in the meantime.
func (c *Cluster) start(ctx context.Context) error {
	logPath := filepath.Join(c.dir, logName)
	for attempt := 1; ; attempt++ {
		port, err := pickPort()
		if err != nil {
			return fmt.Errorf("pick port: %w", err)
		}
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on", port, shellQuote(c.dir))
		c.log.Info("devpg: starting postgres", "port", port, "log", logPath)
		out, err := c.run(ctx, "pg_ctl", "start", "-w", "-D", c.dir, "-l", logPath, "-o", opts)
		if err == nil {
			c.port = port
			return nil
		}
		if ctx.Err() == nil && attempt < startAttempts && portBusy(port) {
			c.log.Warn("devpg: port taken, retrying with another", "port", port, "attempt", attempt)
			continue
		}
		return fmt.Errorf("pg_ctl start: %w%s\n%s tail:\n%s", err, formatOutput(out), logName, logTail(logPath))
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, err
	}
	return port, nil
}

// portBusy reports whether something is listening on 127.0.0.1:port.
func portBusy(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	_ = l.Close()
	return false
}

// logTail returns the last few KB of the server log, for error messages.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > logTailBytes {
		if _, err := f.Seek(-logTailBytes, io.SeekEnd); err != nil {
			return "(unavailable: " + err.Error() + ")"
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	return strings.TrimSpace(string(b))
}

// ensureDatabase creates the database "sluice" if it does not exist.
func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := c.connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	if exists {
		return nil
	}
	c.log.Info("devpg: creating database", "database", database)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlstateDuplicateDatabase {
			return nil // created concurrently
		}
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// connect connects to db, retrying briefly while the server finishes starting
// (relevant when reusing a server another process has just launched).
func (c *Cluster) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.urlFor(db))
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// command builds a command for one of the PostgreSQL programs, run as the
// unprivileged user when we are root, in the data directory.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dir
	cmd.WaitDelay = 5 * time.Second
	if c.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: c.runAs.uid, Gid: c.runAs.gid},
		}
	}
	return cmd
}

// run runs a PostgreSQL program and returns its combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := c.command(ctx, name, args...).CombinedOutput()
	c.log.Debug("devpg: ran "+name, "args", args, "output", string(bytes.TrimSpace(out)), "err", err)
	return string(bytes.TrimSpace(out)), err
}

// formatOutput renders command output for appending to an error.
func formatOutput(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	return ": " + out
}

// shellQuote quotes s for /bin/sh; pg_ctl passes -o through a shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
