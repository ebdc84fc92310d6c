package engine

import (
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Outage logs a background task's failures once per outage instead of
// once per attempt: the first failure at Warn, then (while it goes on) a
// reminder with the count at most once a minute, and the recovery at Info.
// Failures that are not ErrUnavailable are logged every time. The zero
// value is ready; it is safe for concurrent use.
type Outage struct {
	mu     sync.Mutex
	since  time.Time // zero while the task succeeds
	last   time.Time // last line logged
	failed int
}

// Fail reports a failed attempt of what.
func (o *Outage) Fail(log *slog.Logger, what string, err error) {
	if !errors.Is(err, ErrUnavailable) {
		log.Warn(what, "err", err)
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	o.failed++
	switch {
	case o.since.IsZero():
		o.since, o.last, o.failed = now, now, 0
		log.Warn(what+": database unavailable; retrying", "err", err)
	case now.Sub(o.last) >= time.Minute:
		log.Warn(what+": database still unavailable", "since", o.since, "failedAttempts", o.failed, "err", err)
		o.last, o.failed = now, 0
	}
}

// OK reports a successful attempt: it ends an outage.
func (o *Outage) OK(log *slog.Logger, what string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.since.IsZero() {
		log.Info(what+": database available again", "after", time.Since(o.since).Round(time.Millisecond))
		o.since = time.Time{}
	}
}
