package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultNATSServer is where the CI machine has the nats-server binary.
const DefaultNATSServer = "/usr/sbin/nats-server"

// NATSServerBinary returns the nats-server program fault tests run:
// $SLUICE_NATS_SERVER, else /usr/sbin/nats-server, else nats-server in
// $PATH. The error says what was looked for.
func NATSServerBinary() (string, error) {
	if p := os.Getenv("SLUICE_NATS_SERVER"); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("SLUICE_NATS_SERVER=%s: %w", p, err)
		}
		return p, nil
	}
	if executable(DefaultNATSServer) == nil {
		return DefaultNATSServer, nil
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("nats-server not found: set SLUICE_NATS_SERVER, or install it at %s or in $PATH "+
		"(e.g. apt-get install nats-server, or go install github.com/nats-io/nats-server/v2@latest)", DefaultNATSServer)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// NATSProc is a nats-server running as a child process on a fixed loopback
// port, for fault injection: it can be killed (SIGKILL), stopped (SIGSTOP:
// connections stay open but nothing is answered) and continued, and
// started again on the same port. Its output goes to nats.log in a temp
// dir; Tail returns the end of it. Methods are called from the test's
// goroutine.
type NATSProc struct {
	t       testing.TB
	bin     string
	port    int
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	paused bool
}

// StartNATSProc starts nats-server on a free loopback port; it is stopped
// when the test ends. The test fails (it is not skipped) when nats-server
// is not installed.
func StartNATSProc(t testing.TB) *NATSProc {
	t.Helper()
	bin, err := NATSServerBinary()
	if err != nil {
		t.Fatalf("testenv: fault tests need a nats-server binary: %v", err)
	}
	port, err := freeTCPPort()
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	n := &NATSProc{t: t, bin: bin, port: port, logPath: filepath.Join(t.TempDir(), "nats.log")}
	t.Cleanup(n.Stop)
	n.Start()
	return n
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// URL returns the server's client URL.
func (n *NATSProc) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// Pid returns the process id of the running server, or 0.
func (n *NATSProc) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Start starts the server on its port (again) and returns once it accepts
// client connections.
func (n *NATSProc) Start() {
	n.t.Helper()
	var last error
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if last = n.startOnce(); last == nil {
			return
		}
		// The port may still be held by the previous process' sockets.
		time.Sleep(100 * time.Millisecond)
	}
	n.t.Fatalf("testenv: nats-server did not start on port %d: %v\nnats.log tail:\n%s", n.port, last, n.Tail(2048))
}

func (n *NATSProc) startOnce() error {
	n.mu.Lock()
	if n.cmd != nil {
		n.mu.Unlock()
		return errors.New("already running")
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "=== %s: starting %s on port %d\n", time.Now().Format(time.RFC3339Nano), n.bin, n.port)
	cmd := exec.Command(n.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server must not outlive a test binary that dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.mu.Unlock()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.paused = cmd, exited, false
	n.mu.Unlock()

	if err := waitNATSReady(n.port, exited, 10*time.Second); err != nil {
		n.Kill()
		return err
	}
	return nil
}

// waitNATSReady waits until the server on port greets a client with INFO.
func waitNATSReady(port int, exited <-chan struct{}, timeout time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errors.New("nats-server exited during start (port taken?)")
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, "INFO ") {
				return nil
			}
			err = fmt.Errorf("no INFO greeting: %q %v", line, rerr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL (kill -9) and waits until the process is gone. Its
// clients see their connections drop, and connection refused until Start.
func (n *NATSProc) Kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd, n.exited, n.paused = nil, nil, false
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		n.t.Errorf("testenv: nats-server (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// Pause sends SIGSTOP: the process keeps its sockets but answers nothing,
// as a hung server or a black-holed network would.
func (n *NATSProc) Pause() {
	n.t.Helper()
	n.signal(syscall.SIGSTOP)
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
}

// Resume sends SIGCONT after Pause.
func (n *NATSProc) Resume() {
	n.t.Helper()
	n.signal(syscall.SIGCONT)
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
}

func (n *NATSProc) signal(sig syscall.Signal) {
	n.t.Helper()
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		n.t.Fatalf("testenv: nats-server is not running (signal %v)", sig)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("testenv: signal %v to nats-server: %v", sig, err)
	}
}

// Restart kills the server (SIGKILL) and starts it again on the same port.
func (n *NATSProc) Restart() {
	n.t.Helper()
	n.Kill()
	n.Start()
}

// Stop ends the server (SIGTERM, then SIGKILL after 5s); it runs when the
// test ends and may be called more than once.
func (n *NATSProc) Stop() {
	n.mu.Lock()
	cmd, exited, paused := n.cmd, n.exited, n.paused
	n.cmd, n.exited, n.paused = nil, nil, false
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	if paused {
		_ = cmd.Process.Signal(syscall.SIGCONT)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// Tail returns up to max bytes of the end of the server's log.
func (n *NATSProc) Tail(max int64) string {
	f, err := os.Open(n.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(-max, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return strings.TrimSpace(string(b))
}
