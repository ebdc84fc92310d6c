package h2

// Split: h2c connections served from the listener, everything else handed
// to net/http with its first bytes in front.

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// splitServer serves h on a loopback listener through srv.Split and an
// http.Server with the given header timeout; it returns the address. The
// test's cleanup shuts both down.
func splitServer(t *testing.T, srv *Server, h http.Handler, headerTimeout time.Duration) (*http.Server, string) {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: headerTimeout, Protocols: new(http.Protocols)}
	hs.Protocols.SetHTTP1(true)
	hs.Protocols.SetUnencryptedHTTP2(true)
	srv.Configure(hs)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(srv.Split(ln, hs)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = hs.Shutdown(ctx)
		if err := srv.Wait(ctx); err != nil {
			t.Errorf("Wait: %v", err)
		}
		if err := recv(t, served); err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return hs, ln.Addr().String()
}

// protoHandler answers with the request's protocol.
var protoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, r.Proto)
})

func TestSplitServesBoth(t *testing.T) {
	t.Parallel()
	_, addr := splitServer(t, &Server{}, protoHandler, waitTimeout)

	// h2c with prior knowledge: served by Server (the raw client sees
	// our SETTINGS and our response).
	c := connect(t, addr)
	c.get(1, "/")
	if r := c.readResponse(1); r.status != "200" || string(r.body) != "HTTP/2.0" {
		t.Fatalf("h2c: status %s body %q", r.status, r.body)
	}

	// HTTP/1.1 with a request shorter than the HTTP/2 preface: the sniff
	// must hand it on without waiting for 24 bytes.
	for _, reqText := range []string{
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"PRI / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", // starts like the preface, then is not
	} {
		nc, err := net.DialTimeout("tcp", addr, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(waitTimeout))
		if _, err := io.WriteString(nc, reqText); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			t.Fatalf("%q: %v", reqText, err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = nc.Close()
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "HTTP/1.") {
			t.Errorf("%q: status %d body %q, want HTTP/1.x", reqText, res.StatusCode, body)
		}
	}

	// Through Go's client, both ways.
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	for want, p := range map[string]*http.Protocols{"HTTP/1.1": &p1, "HTTP/2.0": &p2} {
		tr := &http.Transport{Protocols: p}
		res, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != want {
			t.Errorf("client %s: served as %q", want, body)
		}
	}
}

// TestSplitHeaderTimeout: a connection that sends nothing, or part of the
// preface, is closed after ReadHeaderTimeout.
func TestSplitHeaderTimeout(t *testing.T) {
	t.Parallel()
	_, addr := splitServer(t, &Server{}, protoHandler, 200*time.Millisecond)
	for _, sent := range []string{"", http2.ClientPreface[:10]} {
		c := dialConn(t, addr)
		if sent != "" {
			c.writeRaw([]byte(sent))
		}
		start := time.Now()
		_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
		if n, err := c.nc.Read(make([]byte, 1)); err == nil {
			t.Fatalf("sent %q: read %d bytes, want the connection closed", sent, n)
		}
		if d := time.Since(start); d > waitTimeout/2 {
			t.Fatalf("sent %q: closed after %v", sent, d)
		}
	}
}

// TestSplitShutdown: Shutdown sends GOAWAY to an h2c connection whose
// stream is in flight; the stream completes, Wait returns once the
// connection is gone, and a connection already idle is closed.
func TestSplitShutdown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := &Server{}
	hs, addr := splitServer(t, srv, h, waitTimeout)
	busy := connect(t, addr)
	idle := connect(t, addr)
	busy.get(1, "/slow")
	recv(t, started)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		err := hs.Shutdown(ctx)
		if err == nil {
			err = srv.Wait(ctx)
		}
		shut <- err
	}()
	busy.wantGoAwayFrame(1, http2.ErrCodeNo)
	idle.wantGoAway(0, http2.ErrCodeNo)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown and Wait returned (%v) with a stream in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if r := busy.readResponse(1); r.status != "200" || string(r.body) != "ok" {
		t.Fatalf("in-flight stream: status %s body %q", r.status, r.body)
	}
	busy.wantClosed()
	if err := recv(t, shut); err != nil {
		t.Fatalf("Shutdown, Wait: %v", err)
	}
}

// TestSplitWaitDeadline: Wait closes the connections still open when its
// context ends; Close closes them at once.
func TestSplitWaitDeadline(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	srv := &Server{}
	_, addr := splitServer(t, srv, h, waitTimeout)
	c := connect(t, addr)
	c.get(1, "/")
	recv(t, started)
	srv.Shutdown()
	c.wantGoAwayFrame(1, http2.ErrCodeNo)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Wait = %v, want the deadline", err)
	}
	c.wantClosed()

	// A connection that arrives after Shutdown gets GOAWAY and is closed.
	late := dial(t, addr)
	if err := late.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f := late.read()
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo {
				t.Fatalf("late connection: %s", describe(f))
			}
			break
		}
	}
	late.wantClosed()
}

// TestSplitClose: Close closes every connection at once, streams and all.
func TestSplitClose(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	srv := &Server{}
	_, addr := splitServer(t, srv, h, waitTimeout)
	c := connect(t, addr)
	c.get(1, "/")
	idle := connect(t, addr)
	srv.Close()
	c.wantClosed()
	idle.wantClosed()
}

// wantGoAwayFrame requires the next frame to be GOAWAY with lastID and
// code; the connection may stay open for the streams it still serves.
func (c *clientConn) wantGoAwayFrame(lastID uint32, code http2.ErrCode) {
	c.t.Helper()
	f := c.read()
	if g, ok := f.(*http2.GoAwayFrame); !ok || g.LastStreamID != lastID || g.ErrCode != code {
		c.t.Fatalf("want GOAWAY last=%d %v, got %s", lastID, code, describe(f))
	}
}
