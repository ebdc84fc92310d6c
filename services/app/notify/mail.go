package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
	"unicode"

	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// MailConfig is the server's SMTP configuration (kit.MailConfig).
type MailConfig = kit.MailConfig

// Bounds of the names and text put into an e-mail, in runes.
const (
	maxNameRunes = 100
	maxTextRunes = 4000
)

// mailer sends notification e-mails over SMTP. Safe for concurrent use.
type mailer struct {
	cfg      MailConfig
	from     string // the envelope sender
	fromHead string // the From header
	log      *slog.Logger
	enabled  bool
}

// newMailer checks cfg once: a configuration that cannot produce valid
// addresses disables e-mail, with an error in the log.
func newMailer(cfg MailConfig, log *slog.Logger) *mailer {
	m := &mailer{cfg: cfg, log: log}
	if cfg.Addr == "" {
		return m
	}
	if m.cfg.Timeout <= 0 {
		m.cfg.Timeout = 10 * time.Second
	}
	if m.cfg.Security == "" {
		m.cfg.Security = "none"
		if cfg.Username != "" {
			m.cfg.Security = "starttls"
		}
	}
	switch m.cfg.Security {
	case "starttls", "tls":
	case "none":
		if cfg.Username != "" {
			log.Error("notification e-mail disabled: a password would be sent without TLS (set security to starttls or tls)")
			return m
		}
	default:
		log.Error("notification e-mail disabled: security must be starttls, tls or none", "security", cfg.Security)
		return m
	}
	if _, err := parseAddress("postmaster@" + cfg.Domain); cfg.Domain == "" || err != nil {
		log.Error("notification e-mail disabled: invalid recipient domain", "domain", cfg.Domain)
		return m
	}
	from := cfg.From
	if from == "" {
		from = "noreply@" + cfg.Domain
	}
	a, err := parseAddress(from)
	if err != nil {
		log.Error("notification e-mail disabled: invalid sender", "from", cfg.From, "err", err)
		return m
	}
	m.from, m.fromHead, m.enabled = a.Address, a.String(), true
	return m
}

// parseAddress parses one address, refusing line breaks and anything mail
// would rewrite (comments, groups, trailing text).
func parseAddress(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, errors.New("line break in address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, err
	}
	if !isBareAddress(a.Address) {
		return nil, fmt.Errorf("address %q is not plain", a.Address)
	}
	return a, nil
}

// isBareAddress reports whether s is local@domain with a dot-atom local part
// and a domain of letters, digits, hyphens and dots.
func isBareAddress(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	if !ok || !validLocalPart(local) || domain == "" || len(domain) > 253 {
		return false
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validLocalPart reports whether s can be the local part of an address as
// it is (an RFC 5322 dot-atom of ASCII characters, at most 64 bytes), so no
// quoting, and no character that could end a header or a command line.
func validLocalPart(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// sendMention mails the user of m, after its notification was committed.
// It returns nil when e-mail is disabled or the user has no valid address
// (logged), an error to retry on a failed delivery, and an error wrapping
// engine.ErrJobPermanent when the server refused the mail for good (5xx).
func (m *mailer) sendMention(ctx context.Context, n Mention) error {
	if !m.enabled {
		return nil
	}
	to := n.UserID + "@" + m.cfg.Domain
	if !validLocalPart(n.UserID) {
		m.log.Warn("mention e-mail skipped: user id is not a valid e-mail local part", "user", n.UserID, "messageKey", n.MessageKey)
		return nil
	}
	msg := m.compose(n, to)
	if err := m.deliver(ctx, to, msg); err != nil {
		var reply *textproto.Error
		if errors.As(err, &reply) && reply.Code >= 500 && reply.Code < 600 {
			return fmt.Errorf("send mention e-mail: %w: %w", err, engine.ErrJobPermanent)
		}
		return fmt.Errorf("send mention e-mail: %w", err)
	}
	m.log.Debug("mention e-mail sent", "user", n.UserID, "messageKey", n.MessageKey)
	return nil
}

// compose builds the message. Every header value is either checked
// (addresses) or stripped of control characters and encoded (subject), so
// nothing from the payload can add a header or a recipient.
func (m *mailer) compose(n Mention, to string) []byte {
	author := oneLine(n.Author, maxNameRunes)
	if author == "" {
		author = "Someone"
	}
	channel := oneLine(n.ChannelID, maxNameRunes)
	subject := fmt.Sprintf("%s mentioned you in %s", author, channel)
	// Stable across retries: receivers can fold a duplicate delivery.
	sum := sha256.Sum256([]byte(n.UserID + "\x00" + n.MessageKey))
	id := "<mention." + hex.EncodeToString(sum[:16]) + "@" + m.cfg.Domain + ">"

	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", m.fromHead)
	header("To", to)
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", time.Now().Format(time.RFC1123Z))
	header("Message-ID", id)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	// Quoted-printable keeps lines short and the body 7-bit, whatever the
	// text; the SMTP client dot-stuffs lines that start with ".".
	qp := quotedprintable.NewWriter(&b)
	fmt.Fprintf(qp, "%s mentioned you in %s:\n\n%s\n", author, channel, body(n.Text))
	qp.Close() //nolint:errcheck // writes to a bytes.Buffer
	return b.Bytes()
}

// deliver sends msg to one recipient in one SMTP session, bounded by the
// configured timeout and by ctx.
func (m *mailer) deliver(ctx context.Context, to string, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	host, _, _ := net.SplitHostPort(m.cfg.Addr)
	tlsCfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if m.cfg.TLS != nil {
		tlsCfg = m.cfg.TLS.Clone()
		if tlsCfg.ServerName == "" {
			tlsCfg.ServerName = host
		}
	}
	var conn net.Conn
	var err error
	if m.cfg.Security == "tls" {
		conn, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", m.cfg.Addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", m.cfg.Addr)
	}
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return err
	}
	// Cancellation interrupts a session blocked on the server.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) }) //nolint:errcheck
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if m.cfg.Security == "starttls" {
		// Never fall back to plain text: a server (or a man in the middle)
		// that does not offer STARTTLS gets no mail and no password.
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return errors.New("smtp server does not offer STARTTLS")
		}
		if err := c.StartTLS(tlsCfg); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	}
	if m.cfg.Username != "" {
		// PlainAuth itself refuses to send the password without TLS.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, host)); err != nil {
			return fmt.Errorf("smtp auth: %w", err)
		}
	}
	if err := c.Mail(m.from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	// The server accepted the mail; a failed QUIT must not send it again.
	_ = c.Quit()
	return nil
}

// oneLine returns s with control characters (line breaks included) turned
// into spaces, runs of spaces collapsed, and at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }), " ")
	return truncate(s, n)
}

// body returns the message text with "\n" line breaks, no other control
// characters but tabs, and at most maxTextRunes runes.
func body(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\r':
			return '\n'
		case r == '\n' || r == '\t':
			return r
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
	return truncate(s, maxTextRunes)
}

func truncate(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}
