package server

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// dialHTTP opens a connection to base and sends one HTTP/1.1 request on
// it, keeping the connection open; it returns the connection and the
// status line, or an error if the server closed the connection instead.
func dialHTTP(t *testing.T, base string) (net.Conn, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /healthz-none HTTP/1.1\r\nHost: sluice\r\n\r\n")); err != nil {
		c.Close()
		return nil, "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, "", err
	}
	res.Body.Close()
	return c, res.Status, nil
}

// With a cap of 3 connections per address and loopback not trusted, a 4th
// connection from 127.0.0.1 is closed at once, and counted; closing one
// lets a new one in.
func TestConnectionsPerAddress(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.MaxConnsPerAddr = 3
	cfg.TrustedPeers = "none"
	app := startApp(t, cfg)

	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range 3 {
		c, status, err := dialHTTP(t, app.url)
		if err != nil {
			t.Fatalf("connection %d of 3: %v", i+1, err)
		}
		t.Logf("connection %d: %s", i+1, status)
		open = append(open, c)
	}
	if c, _, err := dialHTTP(t, app.url); err == nil {
		c.Close()
		t.Fatal("a 4th connection from the same address was served")
	}
	if n := app.limited.Load().Refused(); n != 1 {
		t.Errorf("refused counter = %d, want 1", n)
	}

	open[0].Close()
	open = open[1:]
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, _, err := dialHTTP(t, app.url)
		if err == nil {
			open = append(open, c)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection admitted after one was closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// By default loopback is trusted (a local proxy, the benchmarks): many
// more connections than the cap all work.
func TestConnectionsFromLoopbackByDefault(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.MaxConnsPerAddr = 3
	app := startApp(t, cfg)
	for i := range 20 {
		c, _, err := dialHTTP(t, app.url)
		if err != nil {
			t.Fatalf("loopback connection %d with a cap of 3: %v", i+1, err)
		}
		defer c.Close()
	}
}
