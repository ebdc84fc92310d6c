package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// stream is one request and its response.
type stream struct {
	c           *conn
	id          uint32
	cancel      context.CancelFunc
	head        bool
	declaredLen int64 // the request's Content-Length, or -1

	// Guarded by c.mu.
	sendWindow   int64 // what the client lets us send on this stream
	recvWindow   int64 // what the client may still send on it
	recvUnack    int64
	received     int64
	remoteClosed bool // the request ended (END_STREAM)
	reset        bool // reset by either side, or ended: nothing more is sent
	uncounted    bool // no longer in c.active

	body bodyPipe
}

// resetLocked ends the stream's context and request body. c.mu is held.
func (s *stream) resetLocked() {
	if s.reset {
		return
	}
	s.reset = true
	s.cancel()
	s.body.closeWithError(errStreamClosed)
	// A handler waiting in writeStream for a window must see the reset.
	s.c.cond.Broadcast()
}

// run serves the request on the stream's own goroutine.
func (s *stream) run(h http.Handler, req *http.Request) {
	w := &responseWriter{s: s}
	defer func() {
		if w.readTimer != nil {
			w.readTimer.Stop()
		}
		if e := recover(); e != nil {
			if e != http.ErrAbortHandler {
				s.c.log.Error("http2: handler panic", "remote", s.c.remoteAddr, "panic", fmt.Sprint(e), "stack", string(debug.Stack()))
			}
			s.c.mu.Lock()
			reset := s.reset
			s.c.mu.Unlock()
			// Not after a reset, ours or the client's: no RST_STREAM in
			// response to RST_STREAM (RFC 9113 §5.4.2).
			if !reset {
				s.c.streamError(s.id, http2.ErrCodeInternal)
			}
		}
		s.body.Close()
		s.c.closeStream(s)
	}()
	h.ServeHTTP(w, req)
	_ = w.finish()
}

// bodyPipe is a request body: the reader goroutine writes what DATA frames
// carry, the handler reads it.
type bodyPipe struct {
	s       *stream
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	err     error // after buf: io.EOF, or why the body was cut off
	closed  bool  // the handler is done with it
	trailer http.Header
	// The request trailers, received: the handler's Read moves them to
	// trailer (the request's) when it returns io.EOF, so that the
	// handler's goroutine alone touches that map.
	pending []hpack.HeaderField
}

// write adds b; false means nobody will read it.
func (p *bodyPipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.err != nil {
		return false
	}
	p.buf = append(p.buf, b...)
	p.cond.Signal()
	return true
}

func (p *bodyPipe) closeWithError(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *bodyPipe) setTrailers(fields []hpack.HeaderField) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trailer == nil {
		return // none were declared
	}
	p.pending = fields
}

// copyTrailersLocked moves the received trailers into the request's
// Trailer; p.mu is held, by the handler's goroutine.
func (p *bodyPipe) copyTrailersLocked() {
	for _, f := range p.pending {
		k := http.CanonicalHeaderKey(f.Name)
		if _, ok := p.trailer[k]; ok {
			p.trailer[k] = append(p.trailer[k], f.Value)
		}
	}
	p.pending = nil
}

// Read implements io.Reader for the handler.
func (p *bodyPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	for len(p.buf) == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		p.mu.Unlock()
		return 0, errors.New("http2: read on closed body")
	}
	if len(p.buf) == 0 {
		err := p.err
		if err == io.EOF {
			p.copyTrailersLocked()
		}
		p.mu.Unlock()
		return 0, err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil
	}
	p.mu.Unlock()
	p.s.c.returnCredit(p.s, int64(n))
	return n, nil
}

// Close drops what is unread; more data for the stream is dropped too.
func (p *bodyPipe) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	n := len(p.buf)
	p.buf = nil
	p.cond.Broadcast()
	p.mu.Unlock()
	if n > 0 {
		p.s.c.returnCredit(nil, int64(n))
	}
	return nil
}

// responseWriter is a stream's http.ResponseWriter and http.Flusher. Only
// the handler's goroutine uses it.
type responseWriter struct {
	s           *stream
	hdr         http.Header // the handler's
	sent        http.Header // hdr as WriteHeader found it
	status      int
	wroteHeader bool // the status is fixed
	sentHeader  bool // the HEADERS frame is out
	declared    []string
	clen        int64   // the Content-Length the handler set, or -1
	written     int64   // body bytes accepted by Write
	buf         []byte  // what Write gathered, in *bufp
	bufp        *[]byte // from bufPool, between Write and send
	err         error
	readTimer   *time.Timer
}

// bufferLimit is how much a handler may write before a DATA frame goes
// out without a Flush.
const bufferLimit = 16 << 10

func (w *responseWriter) Header() http.Header {
	if w.hdr == nil {
		w.hdr = make(http.Header)
	}
	return w.hdr
}

func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.wroteHeader || code < 200 {
		return // informational responses are not sent
	}
	w.wroteHeader = true
	w.status = code
	w.sent = w.hdr.Clone()
	if w.sent == nil {
		w.sent = make(http.Header)
	}
	w.clen = -1
	if v := w.sent.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.clen = n
		}
	}
	for _, v := range w.sent["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				w.declared = append(w.declared, k)
			}
		}
	}
}

func bodyAllowed(status int) bool { return status >= 200 && status != 204 && status != 304 }

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.s.head {
		return len(p), nil
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		// More would make the response malformed (RFC 9113 §8.1.1).
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.bufp == nil {
		w.bufp = getBuf()
		w.buf = (*w.bufp)[:0]
	}
	w.buf = append(w.buf, p...)
	if len(w.buf) >= bufferLimit {
		if err := w.send(false); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush sends the headers and what was written, in one write.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, reporting a stream or connection that is gone
// (http.ResponseController uses it).
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.send(false)
}

// SetReadDeadline cuts the request body off at t with
// os.ErrDeadlineExceeded (for http.ResponseController); zero clears it.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	if w.readTimer != nil {
		w.readTimer.Stop()
		w.readTimer = nil
	}
	if t.IsZero() {
		return nil
	}
	body := &w.s.body
	if d := time.Until(t); d > 0 {
		w.readTimer = time.AfterFunc(d, func() { body.closeWithError(os.ErrDeadlineExceeded) })
	} else {
		body.closeWithError(os.ErrDeadlineExceeded)
	}
	return nil
}

// finish ends the response when the handler returns.
func (w *responseWriter) finish() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.send(true)
}

// send writes the headers if they are not out yet, the buffered body,
// and, with end, the trailers or END_STREAM.
func (w *responseWriter) send(end bool) error {
	if w.err != nil {
		return w.err
	}
	var fields, trailers []hpack.HeaderField
	if !w.sentHeader {
		fields = w.headerFields(end)
		w.sentHeader = true
	} else if len(w.buf) == 0 && !end {
		return nil
	}
	if end {
		trailers = w.trailerFields()
	}
	err := w.s.c.writeStream(w.s, fields, w.buf, end, trailers)
	if w.bufp != nil {
		// Back to the pool: an idle stream holds no buffer.
		*w.bufp = w.buf
		putBuf(w.bufp)
		w.bufp, w.buf = nil, nil
	}
	if err != nil {
		w.err = err
	}
	return err
}

func (w *responseWriter) headerFields(end bool) []hpack.HeaderField {
	h := w.sent
	fields := make([]hpack.HeaderField, 0, len(h)+3)
	fields = append(fields, hpack.HeaderField{Name: ":status", Value: strconv.Itoa(w.status)})
	for k, vv := range h {
		if skipResponseHeader(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		name := lowerHeader(k)
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue // it would make the response malformed
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v, Sensitive: k == "Set-Cookie"})
		}
	}
	if _, ok := h["Date"]; !ok {
		fields = append(fields, hpack.HeaderField{Name: "date", Value: httpDate()})
	}
	if bodyAllowed(w.status) && len(w.buf) > 0 {
		if _, ok := h["Content-Type"]; !ok {
			fields = append(fields, hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(w.buf[:min(len(w.buf), 512)])})
		}
	}
	if end && !w.s.head && bodyAllowed(w.status) {
		if _, ok := h["Content-Length"]; !ok {
			fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(w.buf))})
		}
	}
	return fields
}

func (w *responseWriter) trailerFields() []hpack.HeaderField {
	var fields []hpack.HeaderField
	for _, k := range w.declared {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range w.hdr[k] {
			if httpguts.ValidHeaderFieldValue(v) {
				fields = append(fields, hpack.HeaderField{Name: lowerHeader(k), Value: v})
			}
		}
	}
	for k, vv := range w.hdr {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				fields = append(fields, hpack.HeaderField{Name: strings.ToLower(name), Value: v})
			}
		}
	}
	return fields
}

// skipResponseHeader drops what HTTP/2 forbids (RFC 9113 §8.2.2) and what
// is only a trailer.
func skipResponseHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Trailer":
		return true
	}
	return strings.HasPrefix(k, http.TrailerPrefix)
}

func lowerHeader(k string) string {
	switch k {
	case "Content-Type":
		return "content-type"
	case "Content-Length":
		return "content-length"
	case "Content-Encoding":
		return "content-encoding"
	case "X-Content-Type-Options":
		return "x-content-type-options"
	case "Vary":
		return "vary"
	case "Grpc-Status":
		return "grpc-status"
	case "Grpc-Message":
		return "grpc-message"
	}
	return strings.ToLower(k)
}

type dateEntry struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[dateEntry]

// httpDate is the Date header, formatted at most once a second.
func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &dateEntry{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

// writeStream sends, for s: a header block (fields, when not nil), data
// in DATA frames as the flow-control windows allow, and with end, the
// trailers (when not nil) or END_STREAM. Each window's worth goes out in
// one write; it waits for WINDOW_UPDATE in between.
func (c *conn) writeStream(s *stream, fields []hpack.HeaderField, data []byte, end bool, trailers []hpack.HeaderField) error {
	if fields == nil && len(data) == 0 && !end {
		return nil
	}
	for {
		var n int
		c.mu.Lock()
		for {
			if s.reset || c.closed {
				c.mu.Unlock()
				return errStreamClosed
			}
			n = int(max(0, min(int64(len(data)), s.sendWindow, c.sendWindow)))
			if n > 0 || len(data) == 0 || fields != nil {
				break
			}
			c.cond.Wait()
		}
		s.sendWindow -= int64(n)
		c.sendWindow -= int64(n)
		maxFrame := c.peerFrame
		c.mu.Unlock()

		chunk := data[:n]
		data = data[n:]
		finish := end && len(data) == 0
		b := getBuf()
		c.wmu.Lock()
		if finish {
			// The response's last frame goes out now, before anything
			// else on the socket: once the client has it, it may open
			// another stream in this one's place (RFC 9113 §5.1.2).
			c.mu.Lock()
			c.uncountLocked(s)
			c.mu.Unlock()
		}
		endSent := false
		if fields != nil {
			endHere := finish && len(chunk) == 0 && len(trailers) == 0
			*b = c.appendFields(*b, s.id, fields, endHere, maxFrame)
			endSent = endHere
			fields = nil
		}
		for len(chunk) > 0 {
			k := min(len(chunk), maxFrame)
			endHere := finish && k == len(chunk) && len(trailers) == 0
			*b = appendData(*b, s.id, chunk[:k], endHere)
			endSent = endSent || endHere
			chunk = chunk[k:]
		}
		if finish && !endSent {
			if len(trailers) > 0 {
				*b = c.appendFields(*b, s.id, trailers, true, maxFrame)
			} else {
				*b = appendData(*b, s.id, nil, true)
			}
		}
		err := c.writeLocked(*b)
		c.wmu.Unlock()
		putBuf(b)
		if err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
	}
}

// appendFields encodes fields (c.wmu is held: the encoder's table follows
// the order of the frames on the wire).
func (c *conn) appendFields(b []byte, id uint32, fields []hpack.HeaderField, end bool, maxFrame int) []byte {
	c.hbuf.Reset()
	for _, f := range fields {
		_ = c.henc.WriteField(f)
	}
	return appendHeaderBlock(b, id, c.hbuf.Bytes(), end, maxFrame)
}

// newRequest builds the request a HEADERS frame opens, or an error when
// it is malformed (RFC 9113 §8.1.1); declaredLen is its Content-Length
// or -1.
func (c *conn) newRequest(f *http2.MetaHeadersFrame) (req *http.Request, declaredLen int64, err error) {
	errMalformed := errors.New("malformed request")
	method := f.PseudoValue("method")
	path := f.PseudoValue("path")
	scheme := f.PseudoValue("scheme")
	authority := f.PseudoValue("authority")
	if method == "" || f.PseudoValue("protocol") != "" {
		return nil, 0, errMalformed
	}
	if method == http.MethodConnect {
		if path != "" || scheme != "" || authority == "" {
			return nil, 0, errMalformed
		}
	} else if path == "" || scheme == "" {
		return nil, 0, errMalformed
	}
	regular := f.RegularFields()
	hdr := make(http.Header, len(regular))
	var cookies []string
	for _, hf := range regular {
		switch hf.Name {
		case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
			return nil, 0, errMalformed
		case "te":
			if hf.Value != "trailers" {
				return nil, 0, errMalformed
			}
		case "cookie":
			cookies = append(cookies, hf.Value)
			continue
		}
		k := http.CanonicalHeaderKey(hf.Name)
		hdr[k] = append(hdr[k], hf.Value)
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	host := authority
	if host == "" {
		host = hdr.Get("Host")
	}
	declaredLen = -1
	if vv := hdr["Content-Length"]; len(vv) > 0 {
		n, err := strconv.ParseUint(vv[0], 10, 63)
		if err != nil || len(vv) > 1 && slicesDiffer(vv) {
			return nil, 0, errMalformed
		}
		declaredLen = int64(n)
	}
	var u *url.URL
	requestURI := path
	if method == http.MethodConnect {
		u = &url.URL{Host: authority}
		requestURI = authority
	} else if u, err = url.ParseRequestURI(path); err != nil {
		return nil, 0, errMalformed
	}
	contentLength := declaredLen
	if f.StreamEnded() {
		if declaredLen > 0 {
			return nil, 0, errMalformed
		}
		contentLength = 0
	}
	req = &http.Request{
		Method:        method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		Header:        hdr,
		ContentLength: contentLength,
		Host:          host,
		RequestURI:    requestURI,
		RemoteAddr:    c.remoteAddr,
		TLS:           c.tlsState,
	}
	for _, v := range hdr["Trailer"] {
		for k := range strings.SplitSeq(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				if req.Trailer == nil {
					req.Trailer = make(http.Header)
				}
				req.Trailer[k] = nil
			}
		}
	}
	return req, declaredLen, nil
}

func slicesDiffer(vv []string) bool {
	for _, v := range vv[1:] {
		if v != vv[0] {
			return true
		}
	}
	return false
}
