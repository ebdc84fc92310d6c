package h2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// Split returns a listener for hs.Serve that passes on the cleartext
// connections that do not start with the HTTP/2 preface (HTTP/1.x) and
// serves those that do (h2c with prior knowledge) with s, hs.Handler
// handling their requests.
//
// It is the cheap way to h2c: net/http hands an h2c connection to
// TLSNextProto from the goroutine that read its preface, which keeps that
// connection's 4 KiB read and 4 KiB write buffers for the connection's
// life; a connection served from here holds neither. ReadHeaderTimeout
// bounds the wait for the first bytes. hs.Shutdown closes the listener;
// call s.Shutdown (Configure registers it) and then s.Wait for the h2c
// connections, which hs does not track.
func (s *Server) Split(ln net.Listener, hs *http.Server) net.Listener {
	l := &splitListener{
		Listener: ln,
		s:        s,
		hs:       hs,
		h1:       make(chan net.Conn),
		errc:     make(chan error),
		done:     make(chan struct{}),
	}
	l.wg.Add(1)
	go l.accept()
	return l
}

type splitListener struct {
	net.Listener
	s    *Server
	hs   *http.Server
	h1   chan net.Conn
	errc chan error
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup // the accept loop
}

// accept takes every connection from the listener until it is closed and
// sniffs each on a goroutine of its own, which serves it when it is h2c.
func (l *splitListener) accept() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errc <- err:
			case <-l.done:
				return
			}
			// Like net/http: a temporary error (out of file descriptors)
			// is waited out, any other ends serving.
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-l.done:
				return
			}
			continue
		}
		backoff = 0
		go l.sniff(c)
	}
}

// Accept returns the next HTTP/1.x connection.
func (l *splitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.h1:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and waits for the accept loop to end.
func (l *splitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	err := l.Listener.Close()
	l.wg.Wait()
	return err
}

// sniff reads the first bytes of c: the HTTP/2 preface makes it h2c,
// anything else goes to net/http with those bytes in front.
func (l *splitListener) sniff(c net.Conn) {
	if d := l.hs.ReadHeaderTimeout; d > 0 {
		_ = c.SetReadDeadline(time.Now().Add(d))
	}
	var buf [len(http2.ClientPreface)]byte
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if !strings.HasPrefix(http2.ClientPreface, string(buf[:n])) {
			break
		}
		if err != nil {
			_ = c.Close()
			return
		}
	}
	if n == len(buf) && string(buf[:]) == http2.ClientPreface {
		_ = c.SetReadDeadline(time.Time{})
		l.s.ServeConn(c, l.handler(c), true)
		return
	}
	select {
	case l.h1 <- &prefixConn{Conn: c, prefix: buf[:n]}:
	case <-l.done:
		_ = c.Close()
	}
}

// handler is hs's handler with the base context net/http would give c's
// requests.
func (l *splitListener) handler(c net.Conn) http.Handler {
	h := l.hs.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	ctx := context.Background()
	if l.hs.BaseContext != nil {
		ctx = l.hs.BaseContext(l)
	}
	ctx = context.WithValue(ctx, http.ServerContextKey, l.hs)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
	if l.hs.ConnContext != nil {
		ctx = l.hs.ConnContext(ctx, c)
	}
	return baseHandler{Handler: h, ctx: ctx}
}

type baseHandler struct {
	http.Handler
	ctx context.Context
}

func (h baseHandler) BaseContext() context.Context { return h.ctx }

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection, as it does with a
// *net.TCPConn.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Wait waits for every connection s serves to end, after Shutdown; when ctx
// ends first it closes them and returns ctx's error.
func (s *Server) Wait(ctx context.Context) error {
	s.mu.Lock()
	if len(s.conns) == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.drained == nil {
		s.drained = make(chan struct{})
	}
	ch := s.drained
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			_ = c.nc.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// Close closes every connection s serves at once, without GOAWAY: for
// http.Server.Close, which does not reach the h2c connections Split
// serves.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown = true
	for c := range s.conns {
		_ = c.nc.Close()
	}
}
