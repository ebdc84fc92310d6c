package h2

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// conn is one HTTP/2 connection. Its reader goroutine (serve) reads every
// frame; handler goroutines write their streams' frames themselves.
//
// Lock order: wmu before mu. Nothing that holds mu writes to the socket.
type conn struct {
	srv        *Server
	nc         net.Conn
	h          http.Handler
	ctx        context.Context // ends with the connection
	cancel     context.CancelFunc
	remoteAddr string
	tlsState   *tls.ConnectionState
	log        *slog.Logger
	fr         *http2.Framer // the reader goroutine's
	maxStreams uint32
	streamWin  int64 // the receive window each stream starts with
	connWin    int64 // the connection's receive window

	wmu  sync.Mutex // one frame sequence at a time on the socket
	henc *hpack.Encoder
	hbuf bytes.Buffer
	werr error // the first write error; every later write fails with it

	mu         sync.Mutex
	cond       sync.Cond // on mu: a send window grew, a stream or the conn ended
	streams    map[uint32]*stream
	active     int    // handlers running
	lastID     uint32 // the highest stream ID the client opened
	sendWindow int64  // what the client lets us send on the connection
	peerWindow int64  // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame  int    // the client's SETTINGS_MAX_FRAME_SIZE
	recvWindow int64  // what the client may still send on the connection
	recvUnack  int64  // consumed request bytes not yet returned to the client
	idleArmed  bool   // the read deadline is the idle timeout's
	goingAway  bool   // GOAWAY sent: no new streams
	closed     bool
}

// serve runs the connection: settings, then one frame at a time until the
// client leaves, a protocol error, shutdown or the idle timeout.
func (c *conn) serve(br *bufio.Reader, sawPreface, shutdown bool) {
	defer c.close()
	// Our settings and the connection window in one write, before reading
	// anything: the client may send them its requests right away.
	b := appendSettings(nil,
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.maxStreams},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWin)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.fr.MaxHeaderListSize},
	)
	if c.connWin > initialWindow {
		b = appendWindowUpdate(b, 0, uint32(c.connWin-initialWindow))
	}
	// ServeConn locked wmu: nothing (a Shutdown's GOAWAY) goes out
	// before our SETTINGS, the server's preface (RFC 9113 §3.4).
	err := c.writeLocked(b)
	c.wmu.Unlock()
	if err != nil {
		return
	}
	if !sawPreface {
		var p [len(http2.ClientPreface)]byte
		if _, err := io.ReadFull(br, p[:]); err != nil || string(p[:]) != http2.ClientPreface {
			return
		}
	}
	if shutdown {
		c.goAway(http2.ErrCodeNo)
	}
	first := true
	for {
		c.armIdle()
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.mu.Lock()
				idle := se.StreamID > c.lastID
				c.mu.Unlock()
				// A malformed request carries its cause; without one it is
				// a WINDOW_UPDATE of 0 or HEADERS padding longer than the
				// frame: on a stream never opened, a connection error
				// (RFC 9113 §5.1, §6.2) that must not use up its ID.
				if first || idle && se.Cause == nil {
					c.fail(http2.ErrCodeProtocol)
					return
				}
				c.streamError(se.StreamID, se.Code)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.fail(http2.ErrCode(ce))
				return
			}
			if errors.Is(err, http2.ErrFrameTooLarge) {
				c.fail(http2.ErrCodeFrameSize)
				return
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.mu.Lock()
				idle := c.active == 0
				c.mu.Unlock()
				if idle {
					c.goAway(http2.ErrCodeNo)
				}
			}
			return // the client left, or the idle timeout
		}
		if first {
			if _, ok := f.(*http2.SettingsFrame); !ok {
				c.fail(http2.ErrCodeProtocol)
				return
			}
			first = false
		}
		if code, ok := c.handle(f); !ok {
			c.fail(code)
			return
		}
	}
}

// armIdle restarts the idle timeout while no handler runs (every frame
// on an idle connection does), and clears it once when one does: a
// connection with streams does not touch its deadline per frame.
// (closeStream arms it too when the last stream ends while the reader
// waits.)
func (c *conn) armIdle() {
	if c.srv.IdleTimeout <= 0 {
		return
	}
	// Under mu, as closeStream sets it: the last deadline set matches
	// the last count of handlers.
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.active == 0:
		c.armIdleLocked()
	case c.idleArmed:
		_ = c.nc.SetReadDeadline(time.Time{})
		c.idleArmed = false
	}
}

// armIdleLocked starts the idle timeout now; c.mu is held.
func (c *conn) armIdleLocked() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.IdleTimeout))
	c.idleArmed = true
}

// handle acts on one frame; ok false is a connection error with code.
func (c *conn) handle(f http2.Frame) (code http2.ErrCode, ok bool) {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		c.mu.Lock()
		s := c.streams[f.StreamID]
		idle := f.StreamID > c.lastID
		if s != nil {
			s.resetLocked()
		}
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, false
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = c.write(appendPingAck(nil, f.Data))
		}
	case *http2.GoAwayFrame:
		// The client opens no more streams; those it has run on.
	case *http2.PushPromiseFrame:
		return http2.ErrCodeProtocol, false
	}
	// PRIORITY and unknown frame types are ignored.
	return 0, true
}

func (c *conn) onSettings(f *http2.SettingsFrame) (http2.ErrCode, bool) {
	if f.IsAck() {
		return 0, true
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			c.mu.Lock()
			delta := int64(s.Val) - c.peerWindow
			c.peerWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					c.mu.Unlock()
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
			c.cond.Broadcast()
			c.mu.Unlock()
		case http2.SettingMaxFrameSize:
			c.mu.Lock()
			c.peerFrame = int(s.Val)
			c.mu.Unlock()
		}
		// SETTINGS_HEADER_TABLE_SIZE bounds our encoder's table, which
		// is empty (see ServeConn).
		return nil
	})
	if err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return http2.ErrCode(ce), false
		}
		return http2.ErrCodeProtocol, false
	}
	c.wmu.Lock()
	b := getBuf()
	*b = appendSettingsAck(*b)
	_ = c.writeLocked(*b)
	putBuf(b)
	c.wmu.Unlock()
	return 0, true
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, bool) {
	c.mu.Lock()
	if f.StreamID == 0 {
		c.sendWindow += int64(f.Increment)
		overflow := c.sendWindow > maxWindow
		c.cond.Broadcast()
		c.mu.Unlock()
		if overflow {
			return http2.ErrCodeFlowControl, false
		}
		return 0, true
	}
	s := c.streams[f.StreamID]
	if s == nil {
		idle := f.StreamID > c.lastID
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, false
		}
		return 0, true // a stream that ended: the update crossed our last frame
	}
	s.sendWindow += int64(f.Increment)
	overflow := s.sendWindow > maxWindow
	if overflow {
		s.resetLocked()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if overflow {
		_ = c.write(appendRSTStream(nil, f.StreamID, http2.ErrCodeFlowControl))
	}
	return 0, true
}

func (c *conn) onData(f *http2.DataFrame) (http2.ErrCode, bool) {
	id := f.StreamID
	n := int64(f.Length) // padding counts against flow control
	data := f.Data()
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ErrCodeFlowControl, false
	}
	c.recvWindow -= n
	s := c.streams[id]
	if s == nil || s.remoteClosed || s.reset {
		idle := id > c.lastID
		afterEnd := s != nil && s.remoteClosed && !s.reset
		c.mu.Unlock()
		if idle {
			return http2.ErrCodeProtocol, false
		}
		// A stream that ended or was reset: the data is dropped and its
		// share of the connection window goes back. Data after the
		// client's own END_STREAM is its error (RFC 9113 §5.1).
		c.returnCredit(nil, n)
		if afterEnd {
			c.streamError(id, http2.ErrCodeStreamClosed)
		}
		return 0, true
	}
	if n > s.recvWindow {
		s.resetLocked()
		c.mu.Unlock()
		c.returnCredit(nil, n)
		_ = c.write(appendRSTStream(nil, id, http2.ErrCodeFlowControl))
		return 0, true
	}
	s.recvWindow -= n
	s.received += int64(len(data))
	end := f.StreamEnded()
	bad := s.declaredLen >= 0 && (s.received > s.declaredLen || end && s.received != s.declaredLen)
	if end {
		s.remoteClosed = true
	}
	c.mu.Unlock()
	if bad {
		c.streamError(id, http2.ErrCodeProtocol)
		c.returnCredit(nil, n)
		return 0, true
	}
	if pad := n - int64(len(data)); pad > 0 {
		c.returnCredit(s, pad)
	}
	if !s.body.write(data) {
		// The handler closed the body: nobody reads these bytes.
		c.returnCredit(nil, int64(len(data)))
	}
	if end {
		s.body.closeWithError(io.EOF)
	}
	return 0, true
}

// returnCredit gives n consumed bytes back to the client's windows (the
// connection's, and s's when s is not nil and still receiving), once
// enough has gathered to be worth a frame.
func (c *conn) returnCredit(s *stream, n int64) {
	var connIncr, streamIncr int64
	c.mu.Lock()
	c.recvWindow += n
	c.recvUnack += n
	if c.recvUnack >= c.connWin/4 {
		connIncr, c.recvUnack = c.recvUnack, 0
	}
	if s != nil && !s.remoteClosed && !s.reset {
		s.recvWindow += n
		s.recvUnack += n
		if s.recvUnack >= c.streamWin/4 {
			streamIncr, s.recvUnack = s.recvUnack, 0
		}
	}
	c.mu.Unlock()
	if connIncr == 0 && streamIncr == 0 {
		return
	}
	var b []byte
	if connIncr > 0 {
		b = appendWindowUpdate(b, 0, uint32(connIncr))
	}
	if streamIncr > 0 {
		b = appendWindowUpdate(b, s.id, uint32(streamIncr))
	}
	_ = c.write(b)
}

// streamError resets stream id with code (RFC 9113 §5.4.2).
func (c *conn) streamError(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if id > c.lastID && id%2 == 1 {
		c.lastID = id // a refused new stream still uses up its ID
	}
	if s := c.streams[id]; s != nil {
		s.resetLocked()
	}
	c.mu.Unlock()
	_ = c.write(appendRSTStream(nil, id, code))
}

// fail ends the connection with a connection error.
func (c *conn) fail(code http2.ErrCode) {
	// goingAway is set under wmu, with the GOAWAY written before anyone
	// who sees it (closeStream) may close the socket.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	last := c.lastID
	c.goingAway = true
	c.mu.Unlock()
	_ = c.writeLocked(appendGoAway(nil, last, code))
	// Nothing follows a connection error's GOAWAY (RFC 9113 §5.4.1): not
	// the WINDOW_UPDATE of a handler's unread body as it is cut off.
	if c.werr == nil {
		c.werr = errConnClosed
	}
}

// goAway tells the client that no stream after the last one it opened
// will be served; the connection closes when the running handlers end.
func (c *conn) goAway(code http2.ErrCode) {
	// As in fail: the GOAWAY is out before closeStream can act on
	// goingAway.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.goingAway || c.closed {
		c.mu.Unlock()
		return
	}
	c.goingAway = true
	last, idle := c.lastID, c.active == 0
	c.mu.Unlock()
	_ = c.writeLocked(appendGoAway(nil, last, code))
	if idle {
		_ = c.nc.Close()
	}
}

// close ends the connection: the socket, every stream's context and body,
// and every writer waiting for a window.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	for _, s := range c.streams {
		s.resetLocked()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	_ = c.nc.Close()
}

// write sends b, a sequence of whole frames.
func (c *conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

func (c *conn) writeLocked(b []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if _, err := c.nc.Write(b); err != nil {
		c.werr = errConnClosed
		// The reader sees the closed socket and ends the connection.
		_ = c.nc.Close()
		return c.werr
	}
	return nil
}

// onHeaders opens a stream, or ends one with trailers.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, bool) {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ErrCodeProtocol, false
	}
	c.mu.Lock()
	if s := c.streams[id]; s != nil {
		// Request trailers: they end the request body.
		if s.remoteClosed && s.uncounted {
			// Closed after END_STREAM both ways, though its handler
			// has not returned yet: RFC 9113 §5.1.
			c.mu.Unlock()
			return http2.ErrCodeStreamClosed, false
		}
		if s.remoteClosed {
			// Half-closed (remote): RFC 9113 §5.1.
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeStreamClosed)
			return 0, true
		}
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 ||
			s.declaredLen >= 0 && s.received != s.declaredLen {
			c.mu.Unlock()
			c.streamError(id, http2.ErrCodeProtocol)
			return 0, true
		}
		s.remoteClosed = true
		c.mu.Unlock()
		s.body.setTrailers(f.RegularFields())
		s.body.closeWithError(io.EOF)
		return 0, true
	}
	if id <= c.lastID {
		c.mu.Unlock()
		return http2.ErrCodeStreamClosed, false
	}
	c.lastID = id
	refuse := c.goingAway || uint32(c.active) >= c.maxStreams
	c.mu.Unlock()
	if refuse {
		_ = c.write(appendRSTStream(nil, id, http2.ErrCodeRefusedStream))
		return 0, true
	}
	if f.Truncated {
		c.writeStatusOnly(id, http.StatusRequestHeaderFieldsTooLarge, !f.StreamEnded())
		return 0, true
	}
	req, declaredLen, err := c.newRequest(f)
	if err != nil {
		c.streamError(id, http2.ErrCodeProtocol)
		return 0, true
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s := &stream{
		c:           c,
		id:          id,
		cancel:      cancel,
		declaredLen: declaredLen,
		head:        req.Method == http.MethodHead,
	}
	s.body.s = s
	s.body.cond.L = &s.body.mu
	s.body.trailer = req.Trailer
	if f.StreamEnded() {
		s.remoteClosed = true
		req.Body = http.NoBody
	} else {
		req.Body = &s.body
	}
	req = req.WithContext(ctx)
	c.mu.Lock()
	s.sendWindow = c.peerWindow
	s.recvWindow = c.streamWin
	c.streams[id] = s
	c.active++
	c.mu.Unlock()
	go s.run(c.h, req)
	return 0, true
}

// writeStatusOnly answers stream id with an empty response, and asks the
// client to stop sending when its request is not complete.
func (c *conn) writeStatusOnly(id uint32, status int, reset bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.hbuf.Reset()
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	c.mu.Lock()
	maxFrame := c.peerFrame
	c.mu.Unlock()
	b := appendHeaderBlock(nil, id, c.hbuf.Bytes(), true, maxFrame)
	if reset {
		b = appendRSTStream(b, id, http2.ErrCodeNo)
	}
	_ = c.writeLocked(b)
}

// uncountLocked takes s out of the streams counted against
// MAX_CONCURRENT_STREAMS, once. c.mu is held.
func (c *conn) uncountLocked(s *stream) {
	if !s.uncounted {
		s.uncounted = true
		c.active--
	}
}

// closeStream forgets s once its handler has returned and its response
// is out.
func (c *conn) closeStream(s *stream) {
	c.mu.Lock()
	delete(c.streams, s.id)
	c.uncountLocked(s)
	reset := !s.remoteClosed && !s.reset
	s.resetLocked()
	idle := c.active == 0
	closeConn := idle && c.goingAway
	if idle && !closeConn && c.srv.IdleTimeout > 0 {
		// Under mu: were it set after, the reader could have opened a
		// stream and cleared the deadline in between, and the idle
		// timeout would end the connection under that stream.
		c.armIdleLocked()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if reset {
		// The response is complete and the rest of the request is not
		// wanted (RFC 9113 §8.1).
		_ = c.write(appendRSTStream(nil, s.id, http2.ErrCodeNo))
	}
	if closeConn {
		// Under wmu: after the GOAWAY that set goingAway.
		c.wmu.Lock()
		_ = c.nc.Close()
		c.wmu.Unlock()
	}
}
