package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// checkTarget accepts only a plain-HTTP (h2c) base URL whose host is a
// loopback address, unless allowRemote is set: the bench opens thousands of
// streams and writes as fast as it can, which is not something to point at
// somebody else's server by accident.
func checkTarget(base string, allowRemote bool) error {
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("-addr %q: only http:// (h2c) is supported", base)
	}
	if u.Host == "" || u.Path != "" && u.Path != "/" {
		return fmt.Errorf("-addr %q: want http://host:port", base)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-addr %q is not a loopback address; pass -allow-remote to bench it anyway", base)
}

// clients hands out HTTP/2-without-TLS clients, one per group of streams,
// because servers cap the concurrent streams of one connection; with
// groups of one (-streams-per-conn 1) every stream has a TCP connection of
// its own, as a browser tab or a mobile app has. It counts
// the TCP connections its transports dial and hold open (a transport may
// dial a few connections for concurrent first requests and keep one). It is
// safe for concurrent use.
type clients struct {
	dials atomic.Int64
	open  atomic.Int64
	all   []*http.Transport
}

// countedConn decrements the open count once when closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// newClient returns a client with its own transport, hence its own
// connection (HTTP/2 without TLS, or HTTP/1.1 when http1 is set), which it opens with a health check: requests started at once
// on a transport without a connection would each dial one. It must be
// called by one goroutine at a time (all clients are created during setup).
func (c *clients) newClient(ctx context.Context, base string, http1 bool) (*http.Client, error) {
	var protocols http.Protocols
	if http1 {
		protocols.SetHTTP1(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			c.dials.Add(1)
			c.open.Add(1)
			return &countedConn{Conn: conn, open: &c.open}, nil
		},
		// Pings detect a dead server during long idle stretches.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
	}
	c.all = append(c.all, tr)
	// No Client.Timeout: it would cut streams. Unary calls carry their own
	// deadline.
	hc := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := health(ctx, hc, base); err != nil {
		return nil, err
	}
	return hc, nil
}

// health asks the server's gRPC health service, through the Connect
// protocol as JSON, whether it is serving.
func health(ctx context.Context, hc *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/grpc.health.v1.Health/Check", strings.NewReader("{}"))
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4096))
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("SERVING")) {
		return fmt.Errorf("health check: %s: %.200s", res.Status, body)
	}
	return nil
}

// close closes the idle connections of every transport.
func (c *clients) close() {
	for _, tr := range c.all {
		tr.CloseIdleConnections()
	}
}
