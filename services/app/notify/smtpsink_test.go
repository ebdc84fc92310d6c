package notify

import (
	"bytes"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testenv"
)

type sunkMail = testenv.Mail

func startSink(t *testing.T) *testenv.SMTPSink { return testenv.StartSMTP(t) }

// parsed is an accepted message with decoded headers and body.
type parsed struct {
	Header mail.Header
	Body   string
}

func parseMail(t *testing.T, m sunkMail) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("sink got an unreadable message: %v\n%s", err, m.Data)
	}
	raw := io.Reader(msg.Body)
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		raw = quotedprintable.NewReader(raw)
	}
	body, err := io.ReadAll(raw)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return parsed{Header: msg.Header, Body: strings.ReplaceAll(string(body), "\r\n", "\n")}
}
