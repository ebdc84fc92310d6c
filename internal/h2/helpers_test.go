package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// waitTimeout bounds every wait in the tests.
const waitTimeout = 5 * time.Second

// quietLogger discards what the server logs.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startServer serves srv with h on a loopback listener and returns its
// address. When the test ends the listener closes, and every ServeConn
// must have returned within waitTimeout of the clients closing.
func startServer(t testing.TB, srv *Server, h http.Handler) string {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = quietLogger()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var served []chan struct{}
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			done := make(chan struct{})
			mu.Lock()
			served = append(served, done)
			mu.Unlock()
			go func() {
				defer close(done)
				srv.ServeConn(c, h, false)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-acceptDone
		mu.Lock()
		defer mu.Unlock()
		for _, done := range served {
			select {
			case <-done:
			case <-time.After(waitTimeout):
				t.Error("ServeConn did not return after the client closed")
				return
			}
		}
	})
	return ln.Addr().String()
}

// clientConn is the raw client side of one HTTP/2 connection.
type clientConn struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	// The server's settings, as the handshake read them.
	settings map[http2.SettingID]uint32
}

// dial connects to addr and sends the client connection preface (and
// nothing else).
func dial(t testing.TB, addr string) *clientConn {
	t.Helper()
	c := dialConn(t, addr)
	c.writeRaw([]byte(http2.ClientPreface))
	return c
}

// dialConn connects to addr and sends nothing.
func dialConn(t testing.TB, addr string) *clientConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	c := &clientConn{t: t, nc: nc}
	c.fr = http2.NewFramer(nc, nc)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	return c
}

// connect dials addr and completes the settings exchange, sending the
// given client settings.
func connect(t testing.TB, addr string, settings ...http2.Setting) *clientConn {
	t.Helper()
	c := dial(t, addr)
	c.handshake(settings...)
	return c
}

// handshake sends the client's SETTINGS, reads the server's SETTINGS
// (acknowledging it) and the server's ACK of ours; a connection-level
// WINDOW_UPDATE may come in between, anything else fails the test.
func (c *clientConn) handshake(settings ...http2.Setting) {
	c.t.Helper()
	if err := c.fr.WriteSettings(settings...); err != nil {
		c.t.Fatal(err)
	}
	var sawSettings, sawAck bool
	for !sawSettings || !sawAck {
		switch f := c.read().(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				sawAck = true
				continue
			}
			if sawSettings {
				c.t.Fatal("server sent SETTINGS twice")
			}
			sawSettings = true
			c.settings = map[http2.SettingID]uint32{}
			_ = f.ForeachSetting(func(s http2.Setting) error {
				c.settings[s.ID] = s.Val
				return nil
			})
			if err := c.fr.WriteSettingsAck(); err != nil {
				c.t.Fatal(err)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID != 0 {
				c.t.Fatalf("handshake: WINDOW_UPDATE on stream %d", f.StreamID)
			}
		default:
			c.t.Fatalf("handshake: unexpected %v", f.Header())
		}
	}
}

// writeRaw writes b to the socket.
func (c *clientConn) writeRaw(b []byte) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(waitTimeout))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read reads the next frame, failing the test after waitTimeout. A DATA
// frame's payload is only valid until the next read.
func (c *clientConn) read() http2.Frame {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// encode returns the header block for name/value pairs.
func (c *clientConn) encode(pairs ...string) []byte {
	c.t.Helper()
	if len(pairs)%2 != 0 {
		c.t.Fatal("encode: odd number of strings")
	}
	c.hbuf.Reset()
	for i := 0; i < len(pairs); i += 2 {
		if err := c.enc.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]}); err != nil {
			c.t.Fatal(err)
		}
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// writeHeaders sends a complete header block on stream id in one HEADERS
// frame.
func (c *clientConn) writeHeaders(id uint32, end bool, pairs ...string) {
	c.t.Helper()
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID:      id,
		BlockFragment: c.encode(pairs...),
		EndStream:     end,
		EndHeaders:    true,
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// req returns the pseudo-headers of a request for method and path,
// followed by extra name/value pairs.
func req(method, path string, extra ...string) []string {
	return append([]string{":method", method, ":scheme", "http", ":authority", "example.com", ":path", path}, extra...)
}

// get sends a GET for path on stream id.
func (c *clientConn) get(id uint32, path string) {
	c.t.Helper()
	c.writeHeaders(id, true, req("GET", path)...)
}

// writeData sends one DATA frame.
func (c *clientConn) writeData(id uint32, end bool, data []byte) {
	c.t.Helper()
	if err := c.fr.WriteData(id, end, data); err != nil {
		c.t.Fatal(err)
	}
}

// writeWindowUpdate sends a WINDOW_UPDATE.
func (c *clientConn) writeWindowUpdate(id, incr uint32) {
	c.t.Helper()
	if err := c.fr.WriteWindowUpdate(id, incr); err != nil {
		c.t.Fatal(err)
	}
}

// writeRST sends RST_STREAM.
func (c *clientConn) writeRST(id uint32, code http2.ErrCode) {
	c.t.Helper()
	if err := c.fr.WriteRSTStream(id, code); err != nil {
		c.t.Fatal(err)
	}
}

// ping sends a PING and requires the very next frame to be its ACK: it
// proves the server sent nothing else before it.
func (c *clientConn) ping() {
	c.t.Helper()
	data := [8]byte{'s', 'l', 'u', 'i', 'c', 'e', 0, 1}
	if err := c.fr.WritePing(false, data); err != nil {
		c.t.Fatal(err)
	}
	f := c.read()
	p, ok := f.(*http2.PingFrame)
	if !ok || !p.IsAck() || p.Data != data {
		c.t.Fatalf("want PING ACK %q, got %v", data[:], f.Header())
	}
}

// wantRST requires the next frame to be RST_STREAM on id with code.
func (c *clientConn) wantRST(id uint32, code http2.ErrCode) {
	c.t.Helper()
	f := c.read()
	r, ok := f.(*http2.RSTStreamFrame)
	if !ok || r.StreamID != id || r.ErrCode != code {
		c.t.Fatalf("want RST_STREAM stream=%d %v, got %s", id, code, describe(f))
	}
}

// wantGoAway requires the next frame to be GOAWAY with lastID and code,
// and then the connection to close.
func (c *clientConn) wantGoAway(lastID uint32, code http2.ErrCode) {
	c.t.Helper()
	f := c.read()
	g, ok := f.(*http2.GoAwayFrame)
	if !ok || g.LastStreamID != lastID || g.ErrCode != code {
		c.t.Fatalf("want GOAWAY last=%d %v, got %s", lastID, code, describe(f))
	}
	c.wantClosed()
}

// wantClosed requires the server to close the connection with no more
// frames.
func (c *clientConn) wantClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	f, err := c.fr.ReadFrame()
	if err == nil {
		c.t.Fatalf("want the connection closed, got %s", describe(f))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("the connection stayed open")
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
		c.t.Fatalf("want the connection closed, got %v", err)
	}
}

// isReset reports a connection reset by the peer.
func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// describe prints a frame for failure messages.
func describe(f http2.Frame) string {
	switch f := f.(type) {
	case *http2.RSTStreamFrame:
		return f.Header().String() + " code=" + f.ErrCode.String()
	case *http2.GoAwayFrame:
		return f.Header().String() + " code=" + f.ErrCode.String() + " last=" + strconv.Itoa(int(f.LastStreamID))
	case *http2.MetaHeadersFrame:
		var b strings.Builder
		b.WriteString(f.Header().String())
		for _, hf := range f.Fields {
			b.WriteString(" " + hf.Name + "=" + hf.Value)
		}
		return b.String()
	}
	return f.Header().String()
}

// response is what a stream carried back.
type response struct {
	status   string
	fields   []hpack.HeaderField // the regular header fields, in order
	body     []byte
	trailers []hpack.HeaderField
	frames   []http2.FrameType // in order
}

// field returns the first value of field name in fs.
func field(fs []hpack.HeaderField, name string) (string, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// readResponse reads stream id's response through END_STREAM; any frame
// on another stream, or RST_STREAM, fails the test.
func (c *clientConn) readResponse(id uint32) response {
	c.t.Helper()
	var r response
	for {
		f := c.read()
		if f.Header().StreamID != id {
			c.t.Fatalf("reading stream %d: got %s", id, describe(f))
		}
		r.frames = append(r.frames, f.Header().Type)
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if r.status == "" {
				r.status = f.PseudoValue("status")
				r.fields = f.RegularFields()
				if r.status == "" {
					c.t.Fatal("response HEADERS without :status")
				}
			} else {
				if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
					c.t.Fatalf("bad trailers: %s", describe(f))
				}
				r.trailers = f.RegularFields()
			}
			if f.StreamEnded() {
				return r
			}
		case *http2.DataFrame:
			if r.status == "" {
				c.t.Fatal("DATA before HEADERS")
			}
			r.body = append(r.body, f.Data()...)
			if f.StreamEnded() {
				return r
			}
		default:
			c.t.Fatalf("reading stream %d: got %s", id, describe(f))
		}
	}
}

// recv waits for a value on ch, failing the test after waitTimeout.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

// waitCtx blocks until ctx ends or waitTimeout passes; it reports whether
// ctx ended.
func waitCtx(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(waitTimeout):
		return false
	}
}

// okHandler answers every request with 200 "ok".
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, "ok")
})

// wantOK sends a GET on id and requires a 200 "ok" response: the
// connection still serves streams.
func (c *clientConn) wantOK(id uint32) {
	c.t.Helper()
	c.get(id, "/ok")
	r := c.readResponse(id)
	if r.status != "200" || string(r.body) != "ok" {
		c.t.Fatalf("stream %d: status %s body %q", id, r.status, r.body)
	}
}

// send sends v on ch, failing the test after waitTimeout.
func send[T any](t testing.TB, ch chan<- T, v T) {
	t.Helper()
	select {
	case ch <- v:
	case <-time.After(waitTimeout):
		t.Fatal("timed out sending on a channel")
	}
}
