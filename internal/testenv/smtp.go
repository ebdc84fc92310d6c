package testenv

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMTPSink is a minimal SMTP server for tests: HELO/EHLO, MAIL, RCPT, DATA,
// RSET, NOOP, QUIT, and with SMTPSecure also STARTTLS and AUTH PLAIN. It
// records the messages it accepts, can refuse DATA with a transient error a
// number of times, and refuses every recipient nobody@… for good.
type SMTPSink struct {
	t   testing.TB
	ln  net.Listener
	wg  sync.WaitGroup
	sec *SMTPSecure

	mu       sync.Mutex
	conns    map[net.Conn]bool
	failData int // DATA is answered 451 while this is positive
	refused  int // DATA commands answered 451
	mails    []Mail
}

// Mail is one accepted message.
type Mail struct {
	From string
	To   []string
	Data []byte
}

// SMTPSecure makes a sink like a real provider's: it offers STARTTLS with
// Cert and accepts mail only from a session that switched to TLS and
// authenticated (AUTH PLAIN) as Username with Password.
type SMTPSecure struct {
	Cert               tls.Certificate
	Username, Password string
}

// StartSMTP starts a sink on a loopback port; it stops with the test.
func StartSMTP(t testing.TB) *SMTPSink { return StartSecureSMTP(t, nil) }

// StartSecureSMTP starts a sink that requires STARTTLS and AUTH when sec is
// not nil.
func StartSecureSMTP(t testing.TB, sec *SMTPSecure) *SMTPSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	s := &SMTPSink{t: t, ln: ln, sec: sec, conns: make(map[net.Conn]bool)}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// Addr returns the sink's host:port.
func (s *SMTPSink) Addr() string { return s.ln.Addr().String() }

// FailData makes the next n DATA commands fail with 451.
func (s *SMTPSink) FailData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failData = n
}

// Mails returns the accepted messages and how many DATA commands were
// refused.
func (s *SMTPSink) Mails() ([]Mail, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...), s.refused
}

func (s *SMTPSink) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.serve(c)
		}()
	}
}

func (s *SMTPSink) serve(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // every session is bounded
	tp := textproto.NewConn(c)
	reply := func(format string, args ...any) bool { return tp.PrintfLine(format, args...) == nil }
	if !reply("220 sink.test ESMTP test sink") {
		return
	}
	var cur *Mail
	secure, authed := false, false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		var ok bool
		switch strings.ToUpper(verb) {
		case "HELO":
			ok = reply("250 sink.test")
		case "EHLO":
			switch {
			case s.sec != nil && !secure:
				ok = reply("250-sink.test") && reply("250 STARTTLS")
			case s.sec != nil:
				ok = reply("250-sink.test") && reply("250 AUTH PLAIN")
			default:
				ok = reply("250 sink.test")
			}
		case "STARTTLS":
			if s.sec == nil || secure {
				ok = reply("502 5.5.2 command not implemented")
				break
			}
			if !reply("220 2.0.0 ready to start TLS") {
				return
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.sec.Cert}, MinVersion: tls.VersionTLS12})
			if err := tc.Handshake(); err != nil {
				return
			}
			c, tp, secure = tc, textproto.NewConn(tc), true
			reply = func(format string, args ...any) bool { return tp.PrintfLine(format, args...) == nil }
			ok = true
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			if s.sec == nil || !secure || !strings.EqualFold(mech, "PLAIN") {
				ok = reply("504 5.5.4 unrecognized authentication type")
				break
			}
			dec, err := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(dec), "\x00")
			if err != nil || len(parts) != 3 || parts[1] != s.sec.Username || parts[2] != s.sec.Password {
				ok = reply("535 5.7.8 authentication credentials invalid")
				break
			}
			authed = true
			ok = reply("235 2.7.0 authentication successful")
		case "MAIL":
			if s.sec != nil && (!secure || !authed) {
				ok = reply("530 5.7.0 must issue STARTTLS and authenticate first")
				break
			}
			cur = &Mail{From: addrArg(arg, "FROM:")}
			ok = reply("250 2.1.0 ok")
		case "RCPT":
			if cur == nil {
				ok = reply("503 5.5.1 MAIL first")
				break
			}
			to := addrArg(arg, "TO:")
			if strings.HasPrefix(to, "nobody@") {
				ok = reply("550 5.1.1 no such user")
				break
			}
			cur.To = append(cur.To, to)
			ok = reply("250 2.1.5 ok")
		case "DATA":
			if cur == nil || len(cur.To) == 0 {
				ok = reply("503 5.5.1 RCPT first")
				break
			}
			s.mu.Lock()
			fail := s.failData > 0
			if fail {
				s.failData--
				s.refused++
			}
			s.mu.Unlock()
			if fail {
				cur = nil
				ok = reply("451 4.3.0 try again later")
				break
			}
			if !reply("354 end data with <CR><LF>.<CR><LF>") {
				return
			}
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = data
			s.mu.Lock()
			s.mails = append(s.mails, *cur)
			s.mu.Unlock()
			cur = nil
			ok = reply("250 2.0.0 queued")
		case "RSET":
			cur = nil
			ok = reply("250 2.0.0 ok")
		case "NOOP":
			ok = reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			ok = reply("502 5.5.2 command not implemented")
		}
		if !ok {
			return
		}
	}
}

// addrArg returns the address of "FROM:<a> PARAMS" or "TO:<a>".
func addrArg(arg, prefix string) string {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return ""
	}
	a, _, _ := strings.Cut(arg[len(prefix):], " ")
	return strings.Trim(a, "<>")
}
