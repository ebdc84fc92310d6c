// Package h2 is Sluice's HTTP/2 server: the connection side of RFC 9113
// for the connections net/http hands over (h2c with prior knowledge, and
// "h2" negotiated by TLS ALPN), under net/http's Handler interface.
//
// It exists for the cost of a server stream. net/http's HTTP/2 server
// sends every flush from the handler's goroutine to the connection's serve
// goroutine and from there to a new writer goroutine: two hand-offs and a
// goroutine start per event per stream, measured at 16–21 µs of CPU per
// delivered event before any application code. Here a handler's Flush
// writes its frames to the socket itself, under the connection's write
// lock: one write(2) per flush, no hand-off. A connection holds one
// goroutine (its reader) besides the handlers', a 1 KiB read buffer and no
// write buffer while idle.
//
// net/http keeps everything else: accepting, TLS, HTTP/1.1, the connection
// hooks and limits, and Shutdown (Configure registers this server's
// graceful GOAWAY with it).
//
// What it implements: stream states and concurrency (MAX_CONCURRENT_STREAMS,
// REFUSED_STREAM past it), flow control in both directions, header blocks
// split across CONTINUATION frames (read by http2.Framer and hpack, which
// validate them), trailers (declared with the Trailer header or written
// with http.TrailerPrefix), PING, SETTINGS, GOAWAY both ways, RST_STREAM
// (cancelling the handler's context), request body read deadlines
// (http.ResponseController.SetReadDeadline), an idle timeout, and panics in
// handlers (the stream is reset; http.ErrAbortHandler is not logged). It
// does not implement server push, the CONNECT method's tunnels, extended
// CONNECT or priorities (which RFC 9113 lets a server ignore).
package h2

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Server serves HTTP/2 connections. Its zero value is ready to use with
// the defaults documented on each field. Its methods are safe for
// concurrent use.
type Server struct {
	// MaxConcurrentStreams is the number of streams a client may have
	// open on one connection (default 250). A stream past it is refused
	// with REFUSED_STREAM, which clients retry.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a request's header list (default 64 KiB);
	// a request over it gets 431.
	MaxHeaderListSize uint32
	// StreamWindow is the flow-control window for each request body
	// (default 1 MiB), ConnWindow the window for all of a connection's
	// request bodies together (default 1 MiB).
	StreamWindow, ConnWindow int32
	// IdleTimeout closes a connection without streams for this long
	// (with GOAWAY). Zero means no timeout.
	IdleTimeout time.Duration
	// Logger receives handler panics and protocol errors worth a look
	// (default slog.Default()).
	Logger *slog.Logger

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	drained  chan struct{} // closed when conns empties (Wait)
}

const (
	defaultMaxStreams    = 250
	defaultMaxHeaderList = 64 << 10
	defaultWindow        = 1 << 20
	initialWindow        = 65535 // RFC 9113 §6.9.2
	maxWindow            = 1<<31 - 1
	readBufferSize       = 1 << 10
)

// Configure makes s hs's HTTP/2 server: hs hands s every connection that
// negotiated "h2" over TLS and, when hs.Protocols allows unencrypted
// HTTP/2, every cleartext connection that starts with the HTTP/2 preface.
// hs.Shutdown sends each of s's connections a GOAWAY and waits for the
// streams of those hs handed over to end (for connections from Split, call
// Wait). Call it before hs serves.
func (s *Server) Configure(hs *http.Server) {
	if hs.TLSNextProto == nil {
		hs.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	}
	hs.TLSNextProto["h2"] = func(_ *http.Server, c *tls.Conn, h http.Handler) {
		s.ServeConn(c, h, false)
	}
	// net/http's key for cleartext connections with the preface (already
	// read), wrapped in a *tls.Conn that is not one.
	hs.TLSNextProto["unencrypted_http2"] = func(_ *http.Server, c *tls.Conn, h http.Handler) {
		u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			_ = c.Close()
			return
		}
		s.ServeConn(u.UnencryptedNetConn(), h, true)
	}
	hs.RegisterOnShutdown(s.Shutdown)
}

// Shutdown sends every connection a GOAWAY: streams it has accepted run to
// their end, then the connection closes; new streams are refused. It does
// not wait.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAway(http2.ErrCodeNo)
	}
}

// ServeConn serves HTTP/2 on nc until the connection ends, with h handling
// every request; it closes nc. sawPreface says the client's connection
// preface was read from nc already. If h has a BaseContext method (as the
// handlers net/http passes through TLSNextProto do), every request's
// context derives from it.
func (s *Server) ServeConn(nc net.Conn, h http.Handler, sawPreface bool) {
	base := context.Background()
	if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
		base = bc.BaseContext()
	}
	ctx, cancel := context.WithCancel(base)
	c := &conn{
		srv:        s,
		nc:         nc,
		h:          h,
		ctx:        ctx,
		cancel:     cancel,
		remoteAddr: nc.RemoteAddr().String(),
		streams:    make(map[uint32]*stream),
		maxStreams: cmp.Or(s.MaxConcurrentStreams, defaultMaxStreams),
		streamWin:  int64(cmp.Or(s.StreamWindow, defaultWindow)),
		connWin:    int64(cmp.Or(s.ConnWindow, defaultWindow)),
		sendWindow: initialWindow,
		peerWindow: initialWindow,
		peerFrame:  16384,
		log:        s.Logger,
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		c.tlsState = &st
	}
	// The client may send 65535 bytes before it reads our WINDOW_UPDATE
	// (RFC 9113 §6.9.2), and the window cannot shrink.
	c.connWin = max(c.connWin, initialWindow)
	c.recvWindow = c.connWin
	c.cond.L = &c.mu
	c.henc = hpack.NewEncoder(&c.hbuf)
	// Response headers are not indexed (as nginx does): the table would
	// cost every connection about 1.7 KB for a few bytes per response.
	c.henc.SetMaxDynamicTableSizeLimit(0)
	br := bufio.NewReaderSize(nc, readBufferSize)
	c.fr = http2.NewFramer(nil, br)
	c.fr.SetReuseFrames()
	// We advertise no SETTINGS_MAX_FRAME_SIZE: the default applies to
	// what the client sends (RFC 9113 §4.2).
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = cmp.Or(s.MaxHeaderListSize, defaultMaxHeaderList)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)

	c.wmu.Lock() // until serve has written the server's SETTINGS
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	shutdown := s.shutdown
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		if len(s.conns) == 0 && s.drained != nil {
			close(s.drained)
			s.drained = nil
		}
		s.mu.Unlock()
	}()

	c.serve(br, sawPreface, shutdown)
}

// errStreamClosed and errConnClosed are what a handler's Write returns
// once its stream or connection is gone.
var (
	errStreamClosed = errors.New("h2: stream closed")
	errConnClosed   = errors.New("h2: connection closed")
)
