package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// An outage is logged once when it starts and once when it ends, however
// many attempts fail in between; other errors are logged every time.
func TestOutageLogsOnce(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	var o Outage
	down := fmt.Errorf("begin: %w: connection refused", ErrUnavailable)
	for range 50 {
		o.Fail(log, "relay pass", down)
	}
	o.OK(log, "relay pass")
	o.OK(log, "relay pass")
	o.Fail(log, "relay pass", errors.New("syntax error"))
	o.Fail(log, "relay pass", errors.New("syntax error"))
	out := b.String()
	if n := strings.Count(out, "database unavailable; retrying"); n != 1 {
		t.Errorf("%d outage lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "database available again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "syntax error"); n != 2 {
		t.Errorf("%d lines for other errors, want 2:\n%s", n, out)
	}
}
