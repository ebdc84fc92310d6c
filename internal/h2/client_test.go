package h2

// The server under real Go clients: net/http's server hands it h2c and
// TLS "h2" connections through Configure, and net/http's client talks to
// it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

// testServer is an http.Server whose HTTP/2 is srv, and clients for it.
type testServer struct {
	hs     *http.Server
	srv    *Server
	url    string       // "http://..." or "https://..."
	client *http.Client // HTTP/2 only: h2c or TLS "h2"
	http1  *http.Client // HTTP/1.1 only
}

// startHTTPServer serves h with an http.Server configured by srv on a
// loopback listener, over TLS when useTLS is set (ALPN "h2" and
// "http/1.1") and otherwise in cleartext (HTTP/1.1 and h2c with prior
// knowledge). The server shuts down when the test ends.
func startHTTPServer(t *testing.T, srv *Server, h http.Handler, useTLS bool) *testServer {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: waitTimeout, ErrorLog: nil}
	hs.Protocols = new(http.Protocols)
	hs.Protocols.SetHTTP1(true)
	ts := &testServer{hs: hs, srv: srv}
	tr2 := &http.Transport{Protocols: new(http.Protocols)}
	tr1 := &http.Transport{Protocols: new(http.Protocols)}
	tr1.Protocols.SetHTTP1(true)
	if useTLS {
		cert, pool := testenv.SelfSignedCert(t)
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		hs.Protocols.SetHTTP2(true)
		tr2.Protocols.SetHTTP2(true)
		tr2.TLSClientConfig = &tls.Config{RootCAs: pool}
		tr1.TLSClientConfig = &tls.Config{RootCAs: pool}
		ts.url = "https://" + ln.Addr().String()
	} else {
		hs.Protocols.SetUnencryptedHTTP2(true)
		tr2.Protocols.SetUnencryptedHTTP2(true)
		ts.url = "http://" + ln.Addr().String()
	}
	srv.Configure(hs)
	ts.client = &http.Client{Transport: tr2, Timeout: 2 * waitTimeout}
	ts.http1 = &http.Client{Transport: tr1, Timeout: 2 * waitTimeout}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		tr1.CloseIdleConnections()
		tr2.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// modes runs f as a parallel subtest for h2c and for TLS.
func modes(t *testing.T, f func(t *testing.T, useTLS bool)) {
	for _, useTLS := range []bool{false, true} {
		name := "h2c"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, useTLS)
		})
	}
}

// do sends r and requires an HTTP/2 response.
func (ts *testServer) do(t *testing.T, r *http.Request) *http.Response {
	t.Helper()
	resp, err := ts.client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 2 {
		t.Fatalf("response over %s", resp.Proto)
	}
	return resp
}

func TestClientEcho(t *testing.T) {
	t.Parallel()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "not HTTP/2", 500)
			return
		}
		_, _ = io.Copy(w, r.Body)
	})
	modes(t, func(t *testing.T, useTLS bool) {
		ts := startHTTPServer(t, &Server{}, echo, useTLS)
		const n = 100
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := make([]byte, 64<<10)
				_, _ = rand.Read(body)
				resp, err := ts.client.Post(ts.url+"/echo", "application/octet-stream", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				switch {
				case err != nil:
					errs <- err
				case resp.ProtoMajor != 2:
					errs <- fmt.Errorf("request %d over %s", i, resp.Proto)
				case !bytes.Equal(got, body):
					errs <- fmt.Errorf("request %d: echoed %d bytes differ", i, len(got))
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestClientLargeResponse(t *testing.T) {
	t.Parallel()
	const size = 5 << 20
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i*31 + i>>12)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// In uneven writes, as a handler copying from elsewhere would.
		for b := body; len(b) > 0; {
			n := min(len(b), 10007)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
		}
	})
	modes(t, func(t *testing.T, useTLS bool) {
		ts := startHTTPServer(t, &Server{}, h, useTLS)
		req, _ := http.NewRequest("GET", ts.url+"/big", nil)
		resp := ts.do(t, req)
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != size || sha256.Sum256(got) != sha256.Sum256(body) {
			t.Fatalf("got %d bytes, different from the %d sent", len(got), size)
		}
	})
}

func TestClientStreaming(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, useTLS bool) {
		next := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 5 {
				fmt.Fprintf(w, "event %d\n", i)
				if err := http.NewResponseController(w).Flush(); err != nil {
					return
				}
				select {
				case <-next:
				case <-r.Context().Done():
					return
				}
			}
		})
		ts := startHTTPServer(t, &Server{}, h, useTLS)
		req, _ := http.NewRequest("GET", ts.url+"/events", nil)
		resp := ts.do(t, req)
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		for i := range 5 {
			line, err := br.ReadString('\n')
			if err != nil || line != fmt.Sprintf("event %d\n", i) {
				t.Fatalf("event %d: %q, %v", i, line, err)
			}
			// The handler waits for this before it writes the next.
			send(t, next, struct{}{})
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			t.Fatalf("after the events: %q, %v", rest, err)
		}
	})
}

func TestClientCancel(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, useTLS bool) {
		started := make(chan struct{})
		ended := make(chan bool, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			http.NewResponseController(w).Flush()
			close(started)
			ended <- waitCtx(r.Context())
		})
		ts := startHTTPServer(t, &Server{}, h, useTLS)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.url+"/wait", nil)
		resp := ts.do(t, req)
		defer resp.Body.Close()
		recv(t, started)
		cancel()
		if !recv(t, ended) {
			t.Fatal("the handler's context did not end when the client cancelled")
		}
	})
}

func TestClientShutdown(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, useTLS bool) {
		started := make(chan struct{})
		release := make(chan struct{})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			select {
			case <-release:
			case <-time.After(waitTimeout):
			}
			_, _ = io.WriteString(w, "finished")
		})
		srv := &Server{}
		ts := startHTTPServer(t, srv, h, useTLS)
		type result struct {
			body string
			err  error
		}
		got := make(chan result, 1)
		go func() {
			resp, err := ts.client.Get(ts.url + "/slow")
			if err != nil {
				got <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			got <- result{string(b), err}
		}()
		recv(t, started)
		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			shutdown <- ts.hs.Shutdown(ctx)
		}()
		waitGoingAway(t, srv)
		close(release)
		if r := recv(t, got); r.err != nil || r.body != "finished" {
			t.Fatalf("in-flight request: %q, %v", r.body, r.err)
		}
		if err := recv(t, shutdown); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

// waitGoingAway waits until every connection of srv has sent its GOAWAY
// (Shutdown runs its hooks on goroutines of its own).
func waitGoingAway(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		srv.mu.Lock()
		shutdown, all := srv.shutdown, len(srv.conns) > 0
		for c := range srv.conns {
			c.wmu.Lock() // goAway writes GOAWAY under wmu
			c.mu.Lock()
			all = all && c.goingAway
			c.mu.Unlock()
			c.wmu.Unlock()
		}
		srv.mu.Unlock()
		if shutdown && all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the connections did not go away")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClientHTTP1(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s tls=%v", r.Proto, r.URL.Path, r.TLS != nil && r.TLS.HandshakeComplete)
	})
	modes(t, func(t *testing.T, useTLS bool) {
		ts := startHTTPServer(t, &Server{}, h, useTLS)
		for _, c := range []struct {
			client *http.Client
			major  int
			want   string
		}{
			{ts.http1, 1, fmt.Sprintf("HTTP/1.1 /one tls=%v", useTLS)},
			{ts.client, 2, fmt.Sprintf("HTTP/2.0 /one tls=%v", useTLS)},
		} {
			resp, err := c.client.Get(ts.url + "/one")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.ProtoMajor != c.major || string(b) != c.want {
				t.Errorf("%s: %q, %v", resp.Proto, b, err)
			}
		}
	})
}

func TestClientTrailersAndHeaders(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Client"))
		w.WriteHeader(201)
		_, _ = w.Write(b)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", sha256.Sum256(b)))
	})
	modes(t, func(t *testing.T, useTLS bool) {
		ts := startHTTPServer(t, &Server{}, h, useTLS)
		req, _ := http.NewRequest("POST", ts.url+"/t", io.NopCloser(strings.NewReader("payload")))
		req.Trailer = http.Header{"X-Client": nil}
		req.Trailer.Set("X-Client", "sent-after")
		resp := ts.do(t, req)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != "payload" || resp.StatusCode != 201 {
			t.Fatalf("%d %q %v", resp.StatusCode, b, err)
		}
		if got, want := resp.Trailer.Get("X-Sum"), fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
			t.Errorf("trailer X-Sum %q, want %q", got, want)
		}
		// The handler set this header after reading the body to EOF,
		// when the request trailer had arrived.
		if got := resp.Header.Get("X-Req-Trailer"); got != "sent-after" {
			t.Errorf("request trailer %q", got)
		}
	})
}
