package server

import (
	"context"
	"log/slog"
)

// background runs the instance's background components (the JWT
// authenticator's key refresh; the engine's Publisher, Hub, Presence,
// Relay, Worker: each a Run(ctx) error) and stops them in the reverse order
// of their start, each waited for before the next is told to stop: the
// worker and relay stop writing before presence signals its leaves, and
// presence before the hub, which the publisher outlives. No goroutine is
// left behind. Start and stop are called by one goroutine (Open, then
// Shutdown).
type background struct {
	log  *slog.Logger
	runs []bgRun
}

type bgRun struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// start runs run until stop.
func (b *background) start(name string, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	b.runs = append(b.runs, bgRun{name: name, cancel: cancel, done: done})
}

// stop stops every component, the last started first, and waits for each.
func (b *background) stop() {
	if b == nil {
		return // nothing was started (sluiced migrate)
	}
	for i := len(b.runs) - 1; i >= 0; i-- {
		r := b.runs[i]
		r.cancel()
		if err := <-r.done; err != nil && b.log != nil {
			b.log.Warn("background component ended with an error", "component", r.name, "err", err)
		}
	}
	b.runs = nil
}
