package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// server is a sluiced the bench started. The caller must call stop.
type server struct {
	cmd     *exec.Cmd
	base    string
	logPath string
	done    chan struct{} // closed once the process has exited
	waitErr error         // the exit status; read only after done
}

// spawn starts path with `--addr 127.0.0.1:<free port>` and args, its
// output going to logPath (a temporary file when empty), and waits until it
// answers gRPC health checks or timeout passes.
func spawn(ctx context.Context, path string, args []string, logPath string, timeout time.Duration) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var logFile *os.File
	if logPath == "" {
		logFile, err = os.CreateTemp("", "sluice-bench-sluiced-*.log")
	} else {
		logFile, err = os.Create(logPath)
	}
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	s := &server{base: "http://" + addr, logPath: logFile.Name(), done: make(chan struct{})}
	s.cmd = exec.Command(path, append([]string{"--addr", addr}, args...)...)
	s.cmd.Stdout = logFile
	s.cmd.Stderr = logFile
	if err := s.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		defer close(s.done)
		s.waitErr = s.cmd.Wait()
		logFile.Close()
	}()
	if err := s.waitReady(ctx, timeout); err != nil {
		s.stop(10 * time.Second)
		return nil, err
	}
	return s, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process could take it before the server binds it; the
// readiness check then fails with the server's own error in its log.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// waitReady polls the server's gRPC health service (through the Connect
// protocol, as JSON) until it reports SERVING.
func (s *server) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if health(ctx, hc, s.base) == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("server exited before it was ready (%v); log %s:\n%s", s.waitErr, s.logPath, tail(s.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("server not ready after %s; log %s:\n%s", timeout, s.logPath, tail(s.logPath, 20))
		case <-tick.C:
		}
	}
}

// pid returns the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM, waits up to grace for the process to exit, then kills
// it. It returns the exit error unless the exit was the clean one SIGTERM
// asks for.
func (s *server) stop(grace time.Duration) error {
	select {
	case <-s.done:
		return fmt.Errorf("server had already exited: %v", s.waitErr)
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal server: %w", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.done:
		return s.waitErr
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("server did not exit within %s of SIGTERM; killed", grace)
	}
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
