package h2

// Conformance tests in the spirit of h2spec (RFC 9113): a raw client
// writes frames to ServeConn over loopback TCP and checks every frame the
// server sends back.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

func TestSettingsExchange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		srv  *Server
		want map[http2.SettingID]uint32
		// the connection WINDOW_UPDATE the server sends after SETTINGS (0: none)
		connIncr uint32
	}{
		{
			name: "defaults",
			srv:  &Server{},
			want: map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 250,
				http2.SettingInitialWindowSize:    1 << 20,
				http2.SettingMaxHeaderListSize:    64 << 10,
			},
			connIncr: 1<<20 - 65535,
		},
		{
			name: "configured",
			srv:  &Server{MaxConcurrentStreams: 7, MaxHeaderListSize: 12345, StreamWindow: 1 << 18, ConnWindow: 1 << 21},
			want: map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 7,
				http2.SettingInitialWindowSize:    1 << 18,
				http2.SettingMaxHeaderListSize:    12345,
			},
			connIncr: 1<<21 - 65535,
		},
		{
			name: "connection window at the default",
			srv:  &Server{ConnWindow: 65535},
			want: map[http2.SettingID]uint32{
				http2.SettingMaxConcurrentStreams: 250,
				http2.SettingInitialWindowSize:    1 << 20,
				http2.SettingMaxHeaderListSize:    64 << 10,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, startServer(t, tt.srv, okHandler))
			// The server's SETTINGS comes first, before it reads anything.
			f := c.read()
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() || sf.StreamID != 0 {
				t.Fatalf("first frame: %s", describe(f))
			}
			got := map[http2.SettingID]uint32{}
			_ = sf.ForeachSetting(func(s http2.Setting) error { got[s.ID] = s.Val; return nil })
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("settings %v, want %v", got, tt.want)
			}
			if tt.connIncr > 0 {
				f = c.read()
				wu, ok := f.(*http2.WindowUpdateFrame)
				if !ok || wu.StreamID != 0 || wu.Increment != tt.connIncr {
					t.Fatalf("want WINDOW_UPDATE 0 +%d, got %s", tt.connIncr, describe(f))
				}
			}
			if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000}); err != nil {
				t.Fatal(err)
			}
			f = c.read()
			if sf, ok := f.(*http2.SettingsFrame); !ok || !sf.IsAck() || sf.Length != 0 {
				t.Fatalf("want SETTINGS ACK, got %s", describe(f))
			}
			c.ping()
			c.wantOK(1)
		})
	}
}

func TestFirstFrameNotSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(c *clientConn)
	}{
		{"PING", func(c *clientConn) { _ = c.fr.WritePing(false, [8]byte{}) }},
		{"WINDOW_UPDATE", func(c *clientConn) { c.writeWindowUpdate(0, 100) }},
		{"HEADERS", func(c *clientConn) { c.get(1, "/") }},
		{"malformed HEADERS", func(c *clientConn) { c.writeHeaders(1, true, req("GET", "/", "X-Upper", "v")...) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := dial(t, startServer(t, &Server{ConnWindow: 65535}, okHandler))
			if f, ok := c.read().(*http2.SettingsFrame); !ok || f.IsAck() {
				t.Fatal("want the server's SETTINGS")
			}
			tt.write(c)
			lastID := uint32(0)
			if tt.name == "HEADERS" {
				lastID = 1 // the frame is read, and the stream opened, before the check
			}
			f := c.read()
			g, ok := f.(*http2.GoAwayFrame)
			if !ok || g.ErrCode != http2.ErrCodeProtocol || g.LastStreamID > lastID {
				t.Fatalf("want GOAWAY PROTOCOL_ERROR, got %s", describe(f))
			}
			c.wantClosedOrFrames()
		})
	}
}

// wantClosedOrFrames reads until the server closes the connection,
// allowing frames on the way (a stream's response racing a GOAWAY).
func (c *clientConn) wantClosedOrFrames() {
	c.t.Helper()
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.fr.ReadFrame(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.t.Fatal("the connection stayed open")
			}
			return
		}
	}
}

func TestBadPreface(t *testing.T) {
	t.Parallel()
	c := dialConn(t, startServer(t, &Server{ConnWindow: 65535}, okHandler))
	c.writeRaw([]byte("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"))
	// The server's SETTINGS goes out before it reads; then it closes.
	if f, ok := c.read().(*http2.SettingsFrame); !ok || f.IsAck() {
		t.Fatal("want the server's SETTINGS")
	}
	c.wantClosed()
}

func TestInvalidSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setting http2.Setting
		code    http2.ErrCode
	}{
		{"initial window over 2^31-1", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31}, http2.ErrCodeFlowControl},
		{"max frame size below 2^14", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16383}, http2.ErrCodeProtocol},
		{"max frame size over 2^24-1", http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 24}, http2.ErrCodeProtocol},
		{"enable push 2", http2.Setting{ID: http2.SettingEnablePush, Val: 2}, http2.ErrCodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, startServer(t, &Server{}, okHandler))
			c.wantOK(1)
			if err := c.fr.WriteSettings(tt.setting); err != nil {
				t.Fatal(err)
			}
			c.wantGoAway(1, tt.code)
		})
	}
}

func TestMalformedFrames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		frame []byte // raw frame after the handshake
		code  http2.ErrCode
	}{
		{"SETTINGS length not a multiple of 6", rawFrame(http2.FrameSettings, 0, 0, make([]byte, 5)), http2.ErrCodeFrameSize},
		{"SETTINGS ACK with a payload", rawFrame(http2.FrameSettings, http2.FlagSettingsAck, 0, make([]byte, 6)), http2.ErrCodeFrameSize},
		{"SETTINGS on a stream", rawFrame(http2.FrameSettings, 0, 1, nil), http2.ErrCodeProtocol},
		{"PING of 7 bytes", rawFrame(http2.FramePing, 0, 0, make([]byte, 7)), http2.ErrCodeFrameSize},
		{"PING on a stream", rawFrame(http2.FramePing, 0, 1, make([]byte, 8)), http2.ErrCodeProtocol},
		{"DATA on stream 0", rawFrame(http2.FrameData, 0, 0, []byte("x")), http2.ErrCodeProtocol},
		{"WINDOW_UPDATE of 0 on the connection", rawFrame(http2.FrameWindowUpdate, 0, 0, make([]byte, 4)), http2.ErrCodeProtocol},
		{"PUSH_PROMISE from a client", rawFrame(http2.FramePushPromise, http2.FlagPushPromiseEndHeaders, 1, []byte{0, 0, 0, 2}), http2.ErrCodeProtocol},
		{"DATA over the default max frame size", rawFrame(http2.FrameData, 0, 1, make([]byte, 16385)), http2.ErrCodeFrameSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, startServer(t, &Server{}, okHandler))
			c.writeRaw(tt.frame)
			c.wantGoAway(0, tt.code)
		})
	}
}

// rawFrame builds one frame byte by byte, for frames http2.Framer will not
// write.
func rawFrame(t http2.FrameType, flags http2.Flags, id uint32, payload []byte) []byte {
	return append(appendFrameHeader(nil, len(payload), t, flags, id), payload...)
}

func TestPing(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, okHandler))
	for _, data := range [][8]byte{{}, {1, 2, 3, 4, 5, 6, 7, 8}} {
		if err := c.fr.WritePing(false, data); err != nil {
			t.Fatal(err)
		}
		f := c.read()
		if p, ok := f.(*http2.PingFrame); !ok || !p.IsAck() || p.Data != data || p.StreamID != 0 {
			t.Fatalf("want PING ACK %v, got %s", data, describe(f))
		}
	}
	// A PING ACK from the client is not answered.
	if err := c.fr.WritePing(true, [8]byte{9}); err != nil {
		t.Fatal(err)
	}
	c.ping()
}

func TestGet(t *testing.T) {
	t.Parallel()
	gotReq := make(chan *http.Request, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotReq <- r
		w.Header().Set("Connection", "close")
		w.Header().Set("Transfer-Encoding", "chunked")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Upgrade", "h2c")
		w.Header().Set("X-Custom-Header", "v")
		_, _ = io.WriteString(w, "hello")
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.writeHeaders(1, true, req("GET", "/a/b?x=1", "user-agent", "test", "cookie", "a=1", "cookie", "b=2")...)
	r := c.readResponse(1)
	if r.status != "200" || string(r.body) != "hello" {
		t.Fatalf("status %s body %q", r.status, r.body)
	}
	if want := []http2.FrameType{http2.FrameHeaders, http2.FrameData}; fmt.Sprint(r.frames) != fmt.Sprint(want) {
		t.Errorf("frames %v, want %v", r.frames, want)
	}
	for _, f := range r.fields {
		if f.Name != strings.ToLower(f.Name) {
			t.Errorf("header %q not lowercase", f.Name)
		}
		switch f.Name {
		case "connection", "transfer-encoding", "keep-alive", "upgrade", "proxy-connection":
			t.Errorf("connection-specific header %q sent", f.Name)
		}
	}
	for name, want := range map[string]string{
		"content-length":  "5",
		"x-custom-header": "v",
		"content-type":    "text/plain; charset=utf-8",
	} {
		if v, _ := field(r.fields, name); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
	}
	if d, ok := field(r.fields, "date"); !ok {
		t.Error("no date header")
	} else if _, err := http.ParseTime(d); err != nil {
		t.Errorf("date %q: %v", d, err)
	}
	rq := recv(t, gotReq)
	if rq.Method != "GET" || rq.URL.Path != "/a/b" || rq.URL.RawQuery != "x=1" || rq.RequestURI != "/a/b?x=1" ||
		rq.Host != "example.com" || rq.Proto != "HTTP/2.0" || rq.ProtoMajor != 2 || rq.ContentLength != 0 ||
		rq.Header.Get("User-Agent") != "test" || rq.Header.Get("Cookie") != "a=1; b=2" || rq.RemoteAddr == "" {
		t.Errorf("request %+v", rq)
	}
}

func TestPostBody(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		fmt.Fprintf(w, "%s %d %s", r.Method, r.ContentLength, b)
	})
	c := connect(t, startServer(t, &Server{}, h))
	tests := []struct {
		extra []string
		want  string
	}{
		{[]string{"content-length", "11"}, "POST 11 hello world"},
		{nil, "POST -1 hello world"},
	}
	id := uint32(1)
	for _, tt := range tests {
		c.writeHeaders(id, false, req("POST", "/", tt.extra...)...)
		c.writeData(id, false, []byte("hello "))
		c.writeData(id, false, []byte("world"))
		c.writeData(id, true, nil)
		r := c.readResponse(id)
		if r.status != "200" || string(r.body) != tt.want {
			t.Errorf("status %s body %q, want %q", r.status, r.body, tt.want)
		}
		if v, _ := field(r.fields, "content-length"); v != strconv.Itoa(len(tt.want)) {
			t.Errorf("content-length %q", v)
		}
		id += 2
	}
}

func TestContinuation(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Long"))
	})
	c := connect(t, startServer(t, &Server{}, h))
	long := strings.Repeat("v", 300)
	block := c.encode(req("GET", "/", "x-long", long)...)
	third := len(block) / 3
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:third], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteContinuation(1, false, block[third:2*third]); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteContinuation(1, true, block[2*third:]); err != nil {
		t.Fatal(err)
	}
	r := c.readResponse(1)
	if r.status != "200" || string(r.body) != long {
		t.Fatalf("status %s body %q", r.status, r.body)
	}
}

func TestContinuationInterleaved(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		write func(c *clientConn)
	}{
		{"PING", func(c *clientConn) { _ = c.fr.WritePing(false, [8]byte{}) }},
		{"CONTINUATION on another stream", func(c *clientConn) { _ = c.fr.WriteContinuation(3, true, c.encode("a", "b")) }},
		{"HEADERS", func(c *clientConn) { c.get(3, "/") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, startServer(t, &Server{}, okHandler))
			block := c.encode(req("GET", "/")...)
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:2], EndStream: true}); err != nil {
				t.Fatal(err)
			}
			tt.write(c)
			c.wantGoAway(0, http2.ErrCodeProtocol)
		})
	}
	t.Run("CONTINUATION without HEADERS", func(t *testing.T) {
		t.Parallel()
		c := connect(t, startServer(t, &Server{}, okHandler))
		c.wantOK(1)
		if err := c.fr.WriteContinuation(1, true, c.encode("a", "b")); err != nil {
			t.Fatal(err)
		}
		c.wantGoAway(1, http2.ErrCodeProtocol)
	})
}

func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		fields []string
		end    bool     // END_STREAM on HEADERS
		data   []string // DATA frames, the last with END_STREAM
	}{
		{name: "no :method", fields: []string{":scheme", "http", ":path", "/", ":authority", "a"}, end: true},
		{name: "no :path", fields: []string{":method", "GET", ":scheme", "http", ":authority", "a"}, end: true},
		{name: "empty :path", fields: []string{":method", "GET", ":scheme", "http", ":path", "", ":authority", "a"}, end: true},
		{name: "no :scheme", fields: []string{":method", "GET", ":path", "/", ":authority", "a"}, end: true},
		{name: "unknown pseudo-header", fields: req("GET", "/", ":foo", "bar"), end: true},
		{name: "pseudo-header after a regular one", fields: append([]string{"x-a", "b"}, req("GET", "/")...), end: true},
		{name: "duplicate :path", fields: req("GET", "/", ":path", "/again"), end: true},
		{name: "response pseudo-header", fields: req("GET", "/", ":status", "200"), end: true},
		{name: "connection", fields: req("GET", "/", "connection", "keep-alive"), end: true},
		{name: "transfer-encoding", fields: req("POST", "/", "transfer-encoding", "chunked"), end: true},
		{name: "keep-alive", fields: req("GET", "/", "keep-alive", "1"), end: true},
		{name: "upgrade", fields: req("GET", "/", "upgrade", "websocket"), end: true},
		{name: "proxy-connection", fields: req("GET", "/", "proxy-connection", "x"), end: true},
		{name: "te gzip", fields: req("GET", "/", "te", "gzip"), end: true},
		{name: "uppercase name", fields: req("GET", "/", "X-Foo", "bar"), end: true},
		{name: "invalid value", fields: req("GET", "/", "x-foo", "a\r\nb"), end: true},
		{name: "content-length not a number", fields: req("POST", "/", "content-length", "x"), end: true},
		{name: "content-length with END_STREAM on HEADERS", fields: req("POST", "/", "content-length", "5"), end: true},
		{name: "content-length over the DATA", fields: req("POST", "/", "content-length", "5"), data: []string{"abc"}},
		{name: "content-length under the DATA", fields: req("POST", "/", "content-length", "2"), data: []string{"ab", "c"}},
		{name: "CONNECT with :path", fields: []string{":method", "CONNECT", ":authority", "a:443", ":path", "/"}, end: true},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return // the stream was reset: nothing to answer
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, startServer(t, &Server{}, h))
			c.writeHeaders(1, tt.end, tt.fields...)
			for i, d := range tt.data {
				c.writeData(1, i == len(tt.data)-1, []byte(d))
			}
			c.wantRST(1, http2.ErrCodeProtocol)
			c.ping()
			c.wantOK(3)
		})
	}
	t.Run("te trailers is allowed", func(t *testing.T) {
		t.Parallel()
		c := connect(t, startServer(t, &Server{}, h))
		c.writeHeaders(1, true, req("GET", "/", "te", "trailers")...)
		if r := c.readResponse(1); r.status != "200" {
			t.Fatalf("status %s", r.status)
		}
	})
}

func TestStreamIDs(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			select {
			case <-block:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tests := []struct {
		name string
		run  func(c *clientConn)
	}{
		{"HEADERS on an even stream", func(c *clientConn) {
			c.get(2, "/")
			c.wantGoAway(0, http2.ErrCodeProtocol)
		}},
		{"HEADERS on a lower stream ID", func(c *clientConn) {
			c.wantOK(5)
			c.get(3, "/")
			c.wantGoAway(5, http2.ErrCodeStreamClosed)
		}},
		{"HEADERS on a closed stream", func(c *clientConn) {
			c.wantOK(1)
			c.get(1, "/")
			c.wantGoAway(1, http2.ErrCodeStreamClosed)
		}},
		{"DATA on an idle stream", func(c *clientConn) {
			c.writeData(1, true, []byte("x"))
			c.wantGoAway(0, http2.ErrCodeProtocol)
		}},
		{"DATA on an idle stream above an open one", func(c *clientConn) {
			c.wantOK(1)
			c.writeData(3, true, []byte("x"))
			c.wantGoAway(1, http2.ErrCodeProtocol)
		}},
		{"WINDOW_UPDATE on an idle stream", func(c *clientConn) {
			c.writeWindowUpdate(1, 10)
			c.wantGoAway(0, http2.ErrCodeProtocol)
		}},
		{"WINDOW_UPDATE of 0 on an idle stream", func(c *clientConn) {
			c.wantOK(1)
			c.writeRaw(rawFrame(http2.FrameWindowUpdate, 0, 99, make([]byte, 4)))
			c.wantGoAway(1, http2.ErrCodeProtocol)
		}},
		{"HEADERS with padding past the frame", func(c *clientConn) {
			// Pad length 10 in a 3-byte payload (RFC 9113 §6.2).
			c.writeRaw(rawFrame(http2.FrameHeaders, http2.FlagHeadersPadded|http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, 1, []byte{10, 0x82, 0x84}))
			c.wantGoAway(0, http2.ErrCodeProtocol)
		}},
		{"RST_STREAM on an idle stream", func(c *clientConn) {
			c.writeRST(1, http2.ErrCodeCancel)
			c.wantGoAway(0, http2.ErrCodeProtocol)
		}},
		{"DATA after END_STREAM", func(c *clientConn) {
			c.writeHeaders(1, true, req("GET", "/block")...)
			c.writeData(1, false, []byte("x"))
			c.wantRST(1, http2.ErrCodeStreamClosed)
			c.ping()
			c.wantOK(3)
		}},
		{"HEADERS after END_STREAM", func(c *clientConn) {
			c.writeHeaders(1, true, req("GET", "/block")...)
			c.writeHeaders(1, true, "x-trailer", "v")
			c.wantRST(1, http2.ErrCodeStreamClosed)
			c.ping()
			c.wantOK(3)
		}},
		{"WINDOW_UPDATE and RST_STREAM on a closed stream are ignored", func(c *clientConn) {
			c.wantOK(1)
			c.writeWindowUpdate(1, 10)
			c.writeRST(1, http2.ErrCodeCancel)
			c.ping()
			c.wantOK(3)
		}},
		{"trailers without END_STREAM", func(c *clientConn) {
			c.writeHeaders(1, false, req("POST", "/block")...)
			c.writeHeaders(1, false, "x-trailer", "v")
			c.wantRST(1, http2.ErrCodeProtocol)
			c.ping()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(connect(t, startServer(t, &Server{}, h)))
		})
	}
}

// blockingHandler is a handler whose requests wait for a release; started
// receives each request's path as its handler starts.
type blockingHandler struct {
	started chan string
	release map[string]chan struct{}
}

// newBlockingHandler blocks requests for each of paths until released.
func newBlockingHandler(paths ...string) *blockingHandler {
	b := &blockingHandler{started: make(chan string, 16), release: map[string]chan struct{}{}}
	for _, p := range paths {
		b.release[p] = make(chan struct{})
	}
	return b
}

func (b *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.started <- r.URL.Path
	if ch := b.release[r.URL.Path]; ch != nil {
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		case <-time.After(waitTimeout):
			return
		}
	}
	if b.release[r.URL.Path] == nil {
		_, _ = io.WriteString(w, "ok")
		return
	}
	_, _ = io.WriteString(w, "done "+r.URL.Path)
}

func TestMaxConcurrentStreams(t *testing.T) {
	t.Parallel()
	bh := newBlockingHandler("/1", "/3")
	c := connect(t, startServer(t, &Server{MaxConcurrentStreams: 2}, bh))
	if c.settings[http2.SettingMaxConcurrentStreams] != 2 {
		t.Fatalf("settings %v", c.settings)
	}
	c.get(1, "/1")
	c.get(3, "/3")
	got := map[string]bool{recv(t, bh.started): true, recv(t, bh.started): true}
	if !got["/1"] || !got["/3"] {
		t.Fatalf("started %v", got)
	}
	c.get(5, "/5")
	c.wantRST(5, http2.ErrCodeRefusedStream)
	close(bh.release["/1"])
	if r := c.readResponse(1); string(r.body) != "done /1" {
		t.Fatalf("body %q", r.body)
	}
	// Stream 1 is closed both ways: a new stream fits.
	c.get(7, "/7")
	if r := c.readResponse(7); string(r.body) != "ok" {
		t.Fatalf("body %q", r.body)
	}
	if p := recv(t, bh.started); p != "/7" {
		t.Fatalf("started %s", p)
	}
	close(bh.release["/3"])
	if r := c.readResponse(3); string(r.body) != "done /3" {
		t.Fatalf("body %q", r.body)
	}
}

// sizeHandler writes the number of bytes its path names ("/1000") in one
// Write, reporting the Write's error on done when done is not nil.
func sizeHandler(done chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		_, err := w.Write(bytes.Repeat([]byte("x"), n))
		if err == nil {
			err = http.NewResponseController(w).Flush()
		}
		if done != nil {
			done <- err
		}
	})
}

// wantData requires the next frame to be DATA on id with n bytes and the
// given END_STREAM flag.
func (c *clientConn) wantData(id uint32, n int, end bool) {
	c.t.Helper()
	f := c.read()
	d, ok := f.(*http2.DataFrame)
	if !ok || d.StreamID != id || len(d.Data()) != n || d.StreamEnded() != end {
		c.t.Fatalf("want DATA stream=%d len=%d end=%v, got %s", id, n, end, describe(f))
	}
}

// wantHeaders requires the next frame to be HEADERS on id with status.
func (c *clientConn) wantHeaders(id uint32, status string, end bool) *http2.MetaHeadersFrame {
	c.t.Helper()
	f := c.read()
	h, ok := f.(*http2.MetaHeadersFrame)
	if !ok || h.StreamID != id || h.PseudoValue("status") != status || h.StreamEnded() != end {
		c.t.Fatalf("want HEADERS stream=%d :status %s end=%v, got %s", id, status, end, describe(f))
	}
	return h
}

func TestFlowControlStreamWindow(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, sizeHandler(nil)), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	c.get(1, "/1000")
	c.wantHeaders(1, "200", false)
	c.wantData(1, 100, false)
	c.ping() // nothing more while the window is empty
	c.writeWindowUpdate(1, 400)
	c.wantData(1, 400, false)
	c.ping()
	// The connection window allows more; the stream's does not.
	c.writeWindowUpdate(0, 1000)
	c.ping()
	// SETTINGS adds 400 to the open stream's window (0 -> 400).
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 500}); err != nil {
		t.Fatal(err)
	}
	var ack, data bool
	for !ack || !data {
		switch f := c.read().(type) {
		case *http2.SettingsFrame:
			ack = f.IsAck()
		case *http2.DataFrame:
			if f.StreamID != 1 || data || len(f.Data()) != 400 || f.StreamEnded() {
				t.Fatalf("unexpected %s", describe(f))
			}
			data = true
		default:
			t.Fatalf("unexpected %s", describe(f))
		}
	}
	c.ping()
	c.writeWindowUpdate(1, 100)
	c.wantData(1, 100, false)
	c.wantData(1, 0, true) // the handler flushed, then returned
}

func TestFlowControlSettingsShrinkWindow(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, sizeHandler(nil)), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	c.get(1, "/300")
	c.wantHeaders(1, "200", false)
	c.wantData(1, 100, false)
	// The window goes to 0 - 50 = -50; an update of 100 leaves 50.
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 50}); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.read().(*http2.SettingsFrame); !ok || !f.IsAck() {
		t.Fatal("want SETTINGS ACK")
	}
	c.writeWindowUpdate(1, 100)
	c.wantData(1, 50, false)
	c.writeWindowUpdate(1, 150)
	c.wantData(1, 150, false)
	c.wantData(1, 0, true) // the handler flushed, then returned
}

func TestFlowControlMaxFrameSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		settings []http2.Setting
		max      int
	}{
		{"default", nil, 16384},
		{"20000", []http2.Setting{{ID: http2.SettingMaxFrameSize, Val: 20000}}, 20000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			settings := append(tt.settings, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
			c := connect(t, startServer(t, &Server{}, sizeHandler(nil)), settings...)
			c.writeWindowUpdate(0, 1<<20)
			c.get(1, "/60000")
			r := c.readResponse(1)
			if len(r.body) != 60000 {
				t.Fatalf("%d bytes", len(r.body))
			}
			// readResponse keeps no sizes: read again, frame by frame.
			c.get(3, "/60000")
			c.wantHeaders(3, "200", false)
			largest, total := 0, 0
			for total < 60000 {
				f := c.read()
				d, ok := f.(*http2.DataFrame)
				if !ok || d.StreamID != 3 {
					t.Fatalf("unexpected %s", describe(f))
				}
				largest = max(largest, len(d.Data()))
				total += len(d.Data())
			}
			if largest != tt.max {
				t.Fatalf("largest DATA %d, want %d", largest, tt.max)
			}
		})
	}
}

func TestFlowControlConnectionWindow(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, sizeHandler(nil)), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c.get(1, "/100000")
	c.wantHeaders(1, "200", false)
	total := 0
	for total < 65535 {
		f := c.read()
		d, ok := f.(*http2.DataFrame)
		if !ok || d.StreamID != 1 || d.StreamEnded() {
			t.Fatalf("unexpected %s", describe(f))
		}
		total += len(d.Data())
	}
	if total != 65535 {
		t.Fatalf("%d bytes, want 65535", total)
	}
	c.ping()
	c.writeWindowUpdate(0, 100000-65535)
	for total < 100000 {
		f := c.read()
		d, ok := f.(*http2.DataFrame)
		if !ok || d.StreamID != 1 || d.StreamEnded() {
			t.Fatalf("unexpected %s", describe(f))
		}
		total += len(d.Data())
	}
	if total != 100000 {
		t.Fatalf("%d bytes, want 100000", total)
	}
	c.wantData(1, 0, true) // the handler flushed, then returned
}

func TestWindowUpdateErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(c *clientConn)
	}{
		{"stream overflow", func(c *clientConn) {
			c.writeWindowUpdate(1, 1<<31-1)
			c.wantRST(1, http2.ErrCodeFlowControl)
			c.ping()
			c.wantOK(3)
		}},
		{"connection overflow", func(c *clientConn) {
			c.writeWindowUpdate(0, 1<<31-1)
			c.wantGoAway(1, http2.ErrCodeFlowControl)
		}},
		{"stream increment 0", func(c *clientConn) {
			c.writeRaw(rawFrame(http2.FrameWindowUpdate, 0, 1, make([]byte, 4)))
			c.wantRST(1, http2.ErrCodeProtocol)
			c.ping()
			c.wantOK(3)
		}},
		{"connection increment 0", func(c *clientConn) {
			c.writeRaw(rawFrame(http2.FrameWindowUpdate, 0, 0, make([]byte, 4)))
			c.wantGoAway(1, http2.ErrCodeProtocol)
		}},
		{"SETTINGS overflowing an open stream's window", func(c *clientConn) {
			c.writeWindowUpdate(1, 1<<31-1-65535)
			c.ping()
			if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65536}); err != nil {
				c.t.Fatal(err)
			}
			c.wantGoAway(1, http2.ErrCodeFlowControl)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bh := newBlockingHandler("/block")
			c := connect(t, startServer(t, &Server{}, bh))
			c.get(1, "/block")
			recv(t, bh.started)
			tt.run(c)
		})
	}
}

// bodyHandler reads the request body and answers with its length and
// SHA-256; a read error is reported as a 500.
var bodyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		w.WriteHeader(500)
		return
	}
	fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
})

func TestFlowControlRequestBody(t *testing.T) {
	t.Parallel()
	t.Run("stream window exceeded", func(t *testing.T) {
		t.Parallel()
		bh := newBlockingHandler("/block")
		c := connect(t, startServer(t, &Server{StreamWindow: 100}, bh))
		if c.settings[http2.SettingInitialWindowSize] != 100 {
			t.Fatalf("settings %v", c.settings)
		}
		c.writeHeaders(1, false, req("POST", "/block")...)
		recv(t, bh.started)
		c.writeData(1, false, make([]byte, 60))
		c.writeData(1, false, make([]byte, 41))
		c.wantRST(1, http2.ErrCodeFlowControl)
		c.ping()
		c.wantOK(3)
	})
	t.Run("padding counts against the window", func(t *testing.T) {
		t.Parallel()
		bh := newBlockingHandler("/block")
		c := connect(t, startServer(t, &Server{StreamWindow: 100}, bh))
		c.writeHeaders(1, false, req("POST", "/block")...)
		recv(t, bh.started)
		// 50 bytes of data, 50 of padding and the pad length: 101.
		if err := c.fr.WriteDataPadded(1, false, make([]byte, 50), make([]byte, 50)); err != nil {
			t.Fatal(err)
		}
		c.wantRST(1, http2.ErrCodeFlowControl)
	})
	t.Run("padding is returned at once", func(t *testing.T) {
		t.Parallel()
		bh := newBlockingHandler("/block")
		c := connect(t, startServer(t, &Server{StreamWindow: 400}, bh))
		c.writeHeaders(1, false, req("POST", "/block")...)
		recv(t, bh.started)
		// 1 byte of data that nobody reads, 255 of padding and the pad
		// length: the server returns the 256 bytes of padding.
		if err := c.fr.WriteDataPadded(1, false, []byte{1}, make([]byte, 255)); err != nil {
			t.Fatal(err)
		}
		f := c.read()
		if wu, ok := f.(*http2.WindowUpdateFrame); !ok || wu.StreamID != 1 || wu.Increment != 256 {
			t.Fatalf("want WINDOW_UPDATE 1 +256, got %s", describe(f))
		}
	})
	t.Run("connection window exceeded", func(t *testing.T) {
		t.Parallel()
		bh := newBlockingHandler("/block")
		c := connect(t, startServer(t, &Server{ConnWindow: 65535, StreamWindow: 1 << 20}, bh))
		for _, id := range []uint32{1, 3, 5, 7, 9} {
			c.writeHeaders(id, false, req("POST", "/block")...)
			recv(t, bh.started)
			c.writeData(id, false, make([]byte, 16000)) // 80000 in all
		}
		c.wantGoAway(9, http2.ErrCodeFlowControl)
	})
	t.Run("a connection window under 65535 is 65535", func(t *testing.T) {
		t.Parallel()
		// The client may send 65535 bytes before any WINDOW_UPDATE
		// (RFC 9113 §6.9.2), whatever the server would like.
		c := connect(t, startServer(t, &Server{ConnWindow: 1000}, bodyHandler))
		c.writeHeaders(1, false, req("POST", "/")...)
		c.writeData(1, false, make([]byte, 16000))
		c.writeData(1, true, make([]byte, 16000))
		r := c.readResponseSkipWindowUpdates(1)
		if want := fmt.Sprintf("32000 %x", sha256.Sum256(make([]byte, 32000))); string(r.body) != want {
			t.Fatalf("body %q, want %q", r.body, want)
		}
	})
	t.Run("3 MiB body", func(t *testing.T) {
		t.Parallel()
		c := connect(t, startServer(t, &Server{}, bodyHandler))
		body := make([]byte, 3<<20)
		for i := range body {
			body[i] = byte(i * 7)
		}
		c.writeHeaders(1, false, req("POST", "/")...)
		c.sendBody(1, body, int64(c.settings[http2.SettingInitialWindowSize]), 1<<20)
		r := c.readResponseSkipWindowUpdates(1)
		if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256(body)); string(r.body) != want {
			t.Fatalf("body %q, want %q", r.body, want)
		}
	})
}

// sendBody sends body on stream id with END_STREAM, in frames of at most
// 16 KiB, never past the server's windows (starting at streamWin and
// connWin), reading WINDOW_UPDATEs as it needs them.
func (c *clientConn) sendBody(id uint32, body []byte, streamWin, connWin int64) {
	c.t.Helper()
	for len(body) > 0 {
		for streamWin <= 0 || connWin <= 0 {
			f := c.read()
			wu, ok := f.(*http2.WindowUpdateFrame)
			if !ok {
				c.t.Fatalf("waiting for window: got %s", describe(f))
			}
			switch wu.StreamID {
			case 0:
				connWin += int64(wu.Increment)
			case id:
				streamWin += int64(wu.Increment)
			}
		}
		n := int(min(int64(len(body)), 16384, streamWin, connWin))
		c.writeData(id, n == len(body), body[:n])
		body = body[n:]
		streamWin -= int64(n)
		connWin -= int64(n)
	}
}

// readResponseSkipWindowUpdates is readResponse, ignoring WINDOW_UPDATE
// frames on the way.
func (c *clientConn) readResponseSkipWindowUpdates(id uint32) response {
	c.t.Helper()
	for {
		f := c.read()
		if _, ok := f.(*http2.WindowUpdateFrame); ok {
			continue
		}
		h, ok := f.(*http2.MetaHeadersFrame)
		if !ok || h.StreamID != id {
			c.t.Fatalf("want HEADERS on %d, got %s", id, describe(f))
		}
		r := response{status: h.PseudoValue("status"), fields: h.RegularFields()}
		if h.StreamEnded() {
			return r
		}
		rest := c.readResponseBody(id)
		r.body = rest
		return r
	}
}

// readResponseBody reads stream id's DATA through END_STREAM, ignoring
// WINDOW_UPDATE frames.
func (c *clientConn) readResponseBody(id uint32) []byte {
	c.t.Helper()
	var body []byte
	for {
		f := c.read()
		switch f := f.(type) {
		case *http2.WindowUpdateFrame:
			continue
		case *http2.DataFrame:
			if f.StreamID != id {
				c.t.Fatalf("unexpected %s", describe(f))
			}
			body = append(body, f.Data()...)
			if f.StreamEnded() {
				return body
			}
		default:
			c.t.Fatalf("unexpected %s", describe(f))
		}
	}
}

func TestResetCancelsHandler(t *testing.T) {
	t.Parallel()
	t.Run("waiting", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{})
		done := make(chan error, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/ok" {
				_, _ = io.WriteString(w, "ok")
				return
			}
			close(started)
			if !waitCtx(r.Context()) {
				done <- errors.New("the context did not end")
				return
			}
			_, err := io.WriteString(w, "late")
			if err == nil {
				err = http.NewResponseController(w).Flush()
			}
			if err == nil {
				err = errors.New("Write and Flush after RST_STREAM succeeded")
			} else {
				err = nil
			}
			done <- err
		})
		c := connect(t, startServer(t, &Server{}, h))
		c.get(1, "/")
		recv(t, started)
		c.writeRST(1, http2.ErrCodeCancel)
		if err := recv(t, done); err != nil {
			t.Fatal(err)
		}
		c.ping() // and nothing on stream 1 before it
		c.wantOK(3)
		c.ping()
	})
	t.Run("blocked on the flow-control window", func(t *testing.T) {
		t.Parallel()
		done := make(chan error, 1)
		c := connect(t, startServer(t, &Server{}, sizeHandler(done)), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		c.get(1, "/1000")
		c.wantHeaders(1, "200", false)
		c.wantData(1, 10, false)
		c.writeRST(1, http2.ErrCodeCancel)
		if err := recv(t, done); err == nil {
			t.Fatal("the handler's Write succeeded on a reset stream")
		}
		c.ping()
		c.get(3, "/5")
		c.wantHeaders(3, "200", false)
		c.wantData(3, 5, false)
		c.wantData(3, 0, true)
	})
}

func TestTrailers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		h        http.HandlerFunc
		body     string
		trailers string
	}{
		{"declared", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Foo")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Foo", "foo-value")
		}, "body", "x-foo=foo-value"},
		{"TrailerPrefix", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Bar", "bar-value")
		}, "body", "x-bar=bar-value"},
		{"no body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Foo")
			w.WriteHeader(200)
			w.Header().Set("X-Foo", "v")
		}, "", "x-foo=v"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := connect(t, startServer(t, &Server{}, tt.h))
			c.get(1, "/")
			r := c.readResponse(1)
			if string(r.body) != tt.body {
				t.Errorf("body %q", r.body)
			}
			var got []string
			for _, f := range r.trailers {
				got = append(got, f.Name+"="+f.Value)
			}
			if strings.Join(got, ",") != tt.trailers {
				t.Errorf("trailers %v, want %s", got, tt.trailers)
			}
			if r.frames[len(r.frames)-1] != http2.FrameHeaders {
				t.Errorf("frames %v: no trailing HEADERS", r.frames)
			}
			for _, f := range r.fields {
				if f.Name == "x-foo" || f.Name == "x-bar" || strings.HasPrefix(f.Name, strings.ToLower(http.TrailerPrefix)) {
					t.Errorf("trailer %q in the headers", f.Name)
				}
			}
		})
	}
}

func TestRequestTrailers(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Trailer.Get("X-Req"); got != "" {
			t.Errorf("trailer %q before the body's end", got)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(500)
			return
		}
		fmt.Fprintf(w, "%s %s %q", b, r.Trailer.Get("X-Req"), r.Trailer.Get("X-Undeclared"))
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.writeHeaders(1, false, req("POST", "/", "trailer", "x-req")...)
	c.writeData(1, false, []byte("abc"))
	c.writeHeaders(1, true, "x-req", "req-value", "x-undeclared", "no")
	r := c.readResponse(1)
	if want := `abc req-value ""`; string(r.body) != want {
		t.Fatalf("body %q, want %q", r.body, want)
	}
	// Trailers end a body shorter than its content-length.
	c.writeHeaders(3, false, req("POST", "/", "content-length", "10", "trailer", "x-req")...)
	c.writeData(3, false, []byte("abc"))
	c.writeHeaders(3, true, "x-req", "v")
	c.wantRST(3, http2.ErrCodeProtocol)
	c.ping()
	// Trailers with a pseudo-header.
	c.writeHeaders(5, false, req("POST", "/")...)
	c.writeHeaders(5, true, ":path", "/x")
	c.wantRST(5, http2.ErrCodeProtocol)
	c.ping()
}

func TestFlush(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "chunk%d", i)
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-next:
			case <-time.After(waitTimeout):
				t.Error("the client did not see the flush")
				return
			}
		}
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.get(1, "/")
	hf := c.wantHeaders(1, "200", false)
	if _, ok := field(hf.RegularFields(), "content-length"); ok {
		t.Error("content-length on a flushed response")
	}
	for i := range 3 {
		f := c.read()
		d, ok := f.(*http2.DataFrame)
		if !ok || d.StreamID != 1 || d.StreamEnded() || string(d.Data()) != fmt.Sprintf("chunk%d", i) {
			t.Fatalf("flush %d: got %s", i, describe(f))
		}
		send(t, next, struct{}{})
	}
	c.wantData(1, 0, true)
}

func TestHeadAnd204(t *testing.T) {
	t.Parallel()
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			_, err := io.WriteString(w, "x")
			writeErr <- err
			return
		}
		_, _ = io.WriteString(w, "hello")
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.writeHeaders(1, true, req("HEAD", "/")...)
	hf := c.wantHeaders(1, "200", true)
	if v, _ := field(hf.RegularFields(), "content-type"); v != "" {
		// net/http sniffs for HEAD too; here nothing was buffered.
		t.Logf("content-type %q", v)
	}
	c.get(3, "/204")
	hf = c.wantHeaders(3, "204", true)
	if _, ok := field(hf.RegularFields(), "content-length"); ok {
		t.Error("content-length on a 204")
	}
	if err := recv(t, writeErr); !errors.Is(err, http.ErrBodyNotAllowed) {
		t.Fatalf("Write on a 204: %v", err)
	}
	c.ping()
}

// countingHandler is a slog.Handler counting the records it receives.
type countingHandler struct{ n atomic.Int32 }

func (h *countingHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countingHandler) Handle(context.Context, slog.Record) error { h.n.Add(1); return nil }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countingHandler) WithGroup(string) slog.Handler             { return h }

func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	logs := &countingHandler{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/panic-after-flush":
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("boom")
		}
		_, _ = io.WriteString(w, "ok")
	})
	c := connect(t, startServer(t, &Server{Logger: slog.New(logs)}, h))
	c.get(1, "/panic")
	c.wantRST(1, http2.ErrCodeInternal)
	if n := logs.n.Load(); n != 1 {
		t.Errorf("%d log records after a panic, want 1", n)
	}
	c.get(3, "/abort")
	c.wantRST(3, http2.ErrCodeInternal)
	if n := logs.n.Load(); n != 1 {
		t.Errorf("%d log records after ErrAbortHandler, want still 1", n)
	}
	c.get(5, "/panic-after-flush")
	c.wantHeaders(5, "200", false)
	c.wantData(5, len("partial"), false)
	c.wantRST(5, http2.ErrCodeInternal)
	c.wantOK(7)
}

func TestHeaderListTooLarge(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{MaxHeaderListSize: 1024}, okHandler))
	if c.settings[http2.SettingMaxHeaderListSize] != 1024 {
		t.Fatalf("settings %v", c.settings)
	}
	// 20 fields of 32+5+100 bytes each (RFC 7541 §4.1) exceed 1024.
	var big []string
	for i := range 20 {
		big = append(big, fmt.Sprintf("x-big%02d", i), strings.Repeat("b", 100))
	}
	c.writeHeaders(1, true, req("GET", "/", big...)...)
	c.wantHeaders(1, "431", true)
	// With a body to come, the server also resets the stream.
	c.writeHeaders(3, false, req("POST", "/", big...)...)
	c.wantHeaders(3, "431", true)
	c.wantRST(3, http2.ErrCodeNo)
	// The HPACK state survived the oversized blocks.
	c.wantOK(5)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	t.Run("no streams", func(t *testing.T) {
		t.Parallel()
		c := connect(t, startServer(t, &Server{IdleTimeout: idle}, okHandler))
		start := time.Now()
		c.wantGoAway(0, http2.ErrCodeNo)
		if d := time.Since(start); d < idle/2 {
			t.Fatalf("GOAWAY after %v", d)
		}
	})
	t.Run("after a stream", func(t *testing.T) {
		t.Parallel()
		c := connect(t, startServer(t, &Server{IdleTimeout: idle}, okHandler))
		c.wantOK(1)
		c.wantGoAway(1, http2.ErrCodeNo)
	})
	t.Run("open stream", func(t *testing.T) {
		t.Parallel()
		bh := newBlockingHandler("/block")
		c := connect(t, startServer(t, &Server{IdleTimeout: idle}, bh))
		c.get(1, "/block")
		recv(t, bh.started)
		// Waiting is the point: three timeouts pass with the stream open.
		time.Sleep(3 * idle)
		c.ping()
		close(bh.release["/block"])
		if r := c.readResponse(1); string(r.body) != "done /block" {
			t.Fatalf("body %q", r.body)
		}
		c.wantGoAway(1, http2.ErrCodeNo)
	})
}

func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	bh := newBlockingHandler("/block")
	srv := &Server{}
	c := connect(t, startServer(t, srv, bh))
	c.get(1, "/block")
	recv(t, bh.started)
	srv.Shutdown()
	f := c.read()
	if g, ok := f.(*http2.GoAwayFrame); !ok || g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("want GOAWAY last=1 NO_ERROR, got %s", describe(f))
	}
	c.get(3, "/other")
	c.wantRST(3, http2.ErrCodeRefusedStream)
	close(bh.release["/block"])
	if r := c.readResponse(1); r.status != "200" || string(r.body) != "done /block" {
		t.Fatalf("status %s body %q", r.status, r.body)
	}
	c.wantClosed()

	// A connection that arrives after Shutdown is told at once.
	c = dial(t, startServer(t, srv, bh))
	if f, ok := c.read().(*http2.SettingsFrame); !ok || f.IsAck() {
		t.Fatal("want the server's SETTINGS")
	}
	if f, ok := c.read().(*http2.WindowUpdateFrame); !ok || f.StreamID != 0 {
		t.Fatal("want the server's connection WINDOW_UPDATE")
	}
	c.wantGoAway(0, http2.ErrCodeNo)
}

func TestSetReadDeadline(t *testing.T) {
	t.Parallel()
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Error(err)
		}
		_, err := io.ReadAll(r.Body)
		readErr <- err
		w.WriteHeader(http.StatusRequestTimeout)
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.writeHeaders(1, false, req("POST", "/")...)
	c.writeData(1, false, []byte("x"))
	if err := recv(t, readErr); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want os.ErrDeadlineExceeded", err)
	}
	c.wantHeaders(1, "408", true)
	c.wantRST(1, http2.ErrCodeNo)
}

func TestInvalidResponseHeaders(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Bad-Value", "a\r\nb")
		w.Header()["Bad Name"] = []string{"x"}
		w.Header().Set("X-Good", "g")
		_, _ = io.WriteString(w, "body")
		w.Header().Set(http.TrailerPrefix+"X-Bad-Trailer", "a\nb")
		w.Header().Set(http.TrailerPrefix+"X-Good-Trailer", "t")
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.get(1, "/")
	// The client's Framer rejects a malformed header block.
	r := c.readResponse(1)
	if v, _ := field(r.fields, "x-good"); v != "g" || string(r.body) != "body" {
		t.Fatalf("fields %v body %q", r.fields, r.body)
	}
	for _, f := range append(r.fields, r.trailers...) {
		if strings.HasPrefix(f.Name, "x-bad") || strings.Contains(f.Name, " ") {
			t.Errorf("invalid field %q sent", f.Name)
		}
	}
	if v, _ := field(r.trailers, "x-good-trailer"); v != "t" {
		t.Errorf("trailers %v", r.trailers)
	}
}

func TestPanicAfterReset(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		started <- struct{}{}
		waitCtx(r.Context())
		// As a reverse proxy does when its client has gone.
		panic(http.ErrAbortHandler)
	})
	// One stream at a time: a stream served after the reset one is
	// proof that the reset one's handler has ended.
	c := connect(t, startServer(t, &Server{MaxConcurrentStreams: 1}, h))
	c.get(1, "/abort")
	recv(t, started)
	c.writeRST(1, http2.ErrCodeCancel)
	deadline := time.Now().Add(waitTimeout)
	for id := uint32(3); ; id += 2 {
		if time.Now().After(deadline) {
			t.Fatal("no stream served after the reset")
		}
		c.get(id, "/ok")
		f := c.read()
		if f.Header().StreamID == 1 {
			t.Fatalf("after the client's RST_STREAM: %s", describe(f))
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == id && r.ErrCode == http2.ErrCodeRefusedStream {
			continue // the handler of stream 1 is still running
		}
		if h, ok := f.(*http2.MetaHeadersFrame); !ok || h.StreamID != id || h.PseudoValue("status") != "200" {
			t.Fatalf("stream %d: %s", id, describe(f))
		}
		c.wantData(id, 2, true)
		break
	}
	c.ping()
}

func TestIgnoredFrames(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, okHandler))
	// PRIORITY on an idle stream does not open it (RFC 9113 §5.1).
	if err := c.fr.WritePriority(5, http2.PriorityParam{StreamDep: 0, Weight: 10}); err != nil {
		t.Fatal(err)
	}
	// An unknown frame type, and an unknown setting, are ignored (§4.1,
	// §6.5.2).
	c.writeRaw(rawFrame(0xfa, 0x3, 0, []byte("whatever")))
	if err := c.fr.WriteSettings(http2.Setting{ID: 0x7777, Val: 1}); err != nil {
		t.Fatal(err)
	}
	if f, ok := c.read().(*http2.SettingsFrame); !ok || !f.IsAck() {
		t.Fatal("want SETTINGS ACK")
	}
	c.wantOK(1)
	c.wantOK(3)
	// The client's GOAWAY ends nothing the server has.
	if err := c.fr.WriteGoAway(0, http2.ErrCodeNo, nil); err != nil {
		t.Fatal(err)
	}
	c.ping()
}

func TestLargeResponseHeaders(t *testing.T) {
	t.Parallel()
	// Incompressible enough to need HEADERS and two CONTINUATION frames.
	var b strings.Builder
	for i := 0; b.Len() < 70000; i++ {
		fmt.Fprintf(&b, "%x", sha256.Sum256([]byte{byte(i), byte(i >> 8)}))
	}
	long := b.String()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Long", long)
		_, _ = io.WriteString(w, "ok")
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.fr.ReadMetaHeaders = nil // see the frames themselves
	c.get(1, "/")
	var block []byte
	var types []http2.FrameType
	for {
		f := c.read()
		types = append(types, f.Header().Type)
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if f.StreamID != 1 || f.StreamEnded() || f.Length > 16384 {
				t.Fatalf("unexpected %s", describe(f))
			}
			block = append(block, f.HeaderBlockFragment()...)
			if f.HeadersEnded() {
				t.Fatal("the whole block in one frame")
			}
			continue
		case *http2.ContinuationFrame:
			if f.StreamID != 1 || f.Length > 16384 {
				t.Fatalf("unexpected %s", describe(f))
			}
			block = append(block, f.HeaderBlockFragment()...)
			if !f.HeadersEnded() {
				continue
			}
		default:
			t.Fatalf("unexpected %s", describe(f))
		}
		break
	}
	if len(types) < 3 {
		t.Fatalf("frames %v", types)
	}
	fields, err := hpack.NewDecoder(4096, nil).DecodeFull(block)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := field(fields, "x-long"); v != long {
		t.Fatalf("x-long of %d bytes, want %d", len(v), len(long))
	}
	c.wantData(1, 2, true)
}

func TestHeaderTableSize(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{}, okHandler), http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	c.fr.ReadMetaHeaders = nil
	c.get(1, "/")
	f := c.read()
	hf, ok := f.(*http2.HeadersFrame)
	if !ok {
		t.Fatalf("unexpected %s", describe(f))
	}
	// The block starts with a dynamic table size update to 0 (RFC 7541
	// §6.3), and a decoder with no table reads it.
	if b := hf.HeaderBlockFragment(); len(b) == 0 || b[0] != 0x20 {
		t.Fatalf("block starts %x, want 20", b[:min(len(b), 4)])
	}
	d := hpack.NewDecoder(0, nil)
	if _, err := d.DecodeFull(hf.HeaderBlockFragment()); err != nil {
		t.Fatal(err)
	}
	c.wantData(1, 2, true)
}

func TestContentLengthDeclared(t *testing.T) {
	t.Parallel()
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		_, err := io.WriteString(w, "hello, world")
		writeErr <- err
	})
	c := connect(t, startServer(t, &Server{}, h))
	c.get(1, "/")
	if err := recv(t, writeErr); !errors.Is(err, http.ErrContentLength) {
		t.Fatalf("writing past Content-Length: %v, want http.ErrContentLength", err)
	}
	r := c.readResponse(1)
	if v, _ := field(r.fields, "content-length"); v != "5" || len(r.body) > 5 {
		t.Fatalf("content-length %q, body %q", v, r.body)
	}
}

// TestResponseHeadersNotIndexed: the server's HPACK encoder keeps no
// dynamic table (an idle connection holds none), so the same response
// headers cost the same bytes every time.
func TestResponseHeadersNotIndexed(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/proto")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Date", "Tue, 01 Dec 2026 00:00:00 GMT")
		_, _ = io.WriteString(w, "ok")
	})
	c := connect(t, startServer(t, &Server{}, h))
	var sizes []uint32
	for id := uint32(1); id <= 5; id += 2 {
		c.get(id, "/")
		f, ok := c.read().(*http2.MetaHeadersFrame)
		if !ok {
			t.Fatal("want the response HEADERS first")
		}
		sizes = append(sizes, f.Header().Length)
		if d, ok := c.read().(*http2.DataFrame); !ok || !d.StreamEnded() {
			t.Fatal("want the body in one DATA frame with END_STREAM")
		}
	}
	// The first block also carries the table size update to 0.
	if sizes[1] != sizes[2] || sizes[1]+1 < sizes[0] || sizes[1] < 40 {
		t.Fatalf("header block sizes %v: want the same literal fields every time", sizes)
	}
}

// TestRapidReset: a stream the client resets still counts against
// MAX_CONCURRENT_STREAMS until its handler returns, so opening and
// resetting streams cannot run more handlers than the limit (the "rapid
// reset" attack).
func TestRapidReset(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan string, 16)
	// Handlers that do not watch their context: slow to notice a reset.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- r.URL.Path
		if r.URL.Path != "/after" {
			select {
			case <-release:
			case <-time.After(waitTimeout):
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	c := connect(t, startServer(t, &Server{MaxConcurrentStreams: 2}, h))
	for _, id := range []uint32{1, 3} {
		c.get(id, fmt.Sprintf("/%d", id))
		recv(t, started)
		c.writeRST(id, http2.ErrCodeCancel)
	}
	for _, id := range []uint32{5, 7, 9} {
		c.get(id, fmt.Sprintf("/%d", id))
		c.wantRST(id, http2.ErrCodeRefusedStream)
	}
	select {
	case p := <-started:
		t.Fatalf("handler for %s ran with two reset handlers still running", p)
	default:
	}
	close(release)
	// The reset streams' handlers return, nothing is sent on those
	// streams, and a new stream is served.
	deadline := time.Now().Add(waitTimeout)
	for id := uint32(11); ; id += 2 {
		c.get(id, "/after")
		f := c.read()
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
			if d, ok := c.read().(*http2.DataFrame); !ok || string(d.Data()) != "ok" {
				t.Fatalf("stream %d: want the body ok", id)
			}
			break
		}
		if r, ok := f.(*http2.RSTStreamFrame); !ok || r.StreamID != id || r.ErrCode != http2.ErrCodeRefusedStream {
			t.Fatalf("stream %d: got %s", id, describe(f))
		}
		if time.Now().After(deadline) {
			t.Fatal("new streams still refused after the reset handlers returned")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestContinuationFlood: a header block that goes on in CONTINUATION frames
// past twice the header list limit ends the connection, without the server
// buffering it.
func TestContinuationFlood(t *testing.T) {
	t.Parallel()
	c := connect(t, startServer(t, &Server{MaxHeaderListSize: 1024}, okHandler))
	pairs := req("GET", "/")
	for i := range 200 {
		pairs = append(pairs, fmt.Sprintf("x-%d", i), strings.Repeat("v", 100))
	}
	block := c.encode(pairs...)
	const frag = 1000
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:frag], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	for rest := block[frag:]; len(rest) > 0; {
		n := min(frag, len(rest))
		if err := c.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
			break // the server closed the connection: enough
		}
		rest = rest[n:]
	}
	c.wantGoAway(0, http2.ErrCodeProtocol)
}
