package devpg

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Several processes may use one cluster at once (`sluiced serve` and
// `sluiced seed`, two servers, test binaries). Each Cluster registers
// itself as a user in <dir>.users/ while it holds the cluster, and Stop
// stops the server only when no other live user is registered: the last
// one out stops it, and no process pulls the database out from under
// another. A process that dies without calling Stop (a crash, SIGKILL)
// leaves a registration behind whose process is gone; it is ignored and
// removed, so a crash never keeps the cluster from being reused or from
// being stopped by its last live user. Start and Stop decide under an
// exclusive lock on <dir>.lock, so a start and a stop never interleave.

// registration is one Cluster's entry in the users directory.
type registration struct {
	path string
}

// usersDir is the directory of user registrations of the cluster.
func (c *Cluster) usersDir() string { return c.dir + ".users" }

// lock takes the cluster's exclusive lock and returns its release. It
// blocks until the lock is free (flock cannot be interrupted by a
// context); holders keep it only while they start, stop or register, so
// the wait is at most one server start or stop.
func (c *Cluster) lock() (func(), error) {
	f, err := os.OpenFile(c.dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	// Closing the descriptor releases the lock.
	return func() { f.Close() }, nil
}

// register records this Cluster as a user of the server. The caller holds
// the lock.
func (c *Cluster) register() error {
	if err := os.MkdirAll(c.usersDir(), 0o755); err != nil {
		return fmt.Errorf("register cluster user: %w", err)
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("register cluster user: %w", err)
	}
	pid := os.Getpid()
	path := filepath.Join(c.usersDir(), strconv.Itoa(pid)+"-"+hex.EncodeToString(b))
	if err := os.WriteFile(path, []byte(procStartTime(pid)), 0o644); err != nil {
		return fmt.Errorf("register cluster user: %w", err)
	}
	c.reg = &registration{path: path}
	return nil
}

// unregister removes this Cluster's registration. The caller holds the
// lock.
func (c *Cluster) unregister() {
	if c.reg == nil {
		return
	}
	if err := os.Remove(c.reg.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.log.Warn("devpg: remove cluster user registration", "path", c.reg.path, "err", err)
	}
	c.reg = nil
}

// otherUsers returns the pids of the live processes registered as users,
// other registrations of this Cluster excluded, and removes the
// registrations of processes that are gone. The caller holds the lock.
func (c *Cluster) otherUsers() []int {
	entries, err := os.ReadDir(c.usersDir())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("devpg: read cluster users", "err", err)
		}
		return nil
	}
	var pids []int
	for _, e := range entries {
		path := filepath.Join(c.usersDir(), e.Name())
		if c.reg != nil && path == c.reg.path {
			continue
		}
		pidText, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidText)
		start, readErr := os.ReadFile(path)
		if err != nil || readErr != nil || !alive(pid, string(start)) {
			_ = os.Remove(path) // stale: its process is gone
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// alive reports whether the process pid exists, is not a zombie and, if
// start is known, is the process that registered (not a later process
// that reused its pid).
func alive(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, now := procStat(pid)
	if state == "Z" {
		return false
	}
	return start == "" || now == "" || start == now
}

// procStartTime returns when pid started (in clock ticks since boot, from
// /proc), or "" where /proc is not available.
func procStartTime(pid int) string {
	_, start := procStat(pid)
	return start
}

// procStat returns the state and start time of pid from /proc/<pid>/stat,
// or "" for what it cannot read.
func procStat(pid int) (state, start string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", ""
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses, so
	// fields are counted after the last ')'. starttime is field 22.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return "", ""
	}
	return fields[0], fields[19]
}
