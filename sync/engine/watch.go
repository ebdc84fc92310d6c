package engine

import (
	"context"
	"time"
)

// Watch calls eval now and again whenever a record its last evaluation
// depended on changes, until ctx ends or eval or heartbeat fails. eval returns the
// records it read. The Hub hands out every change of a dep's scope in
// order, reading what NATS lost from Postgres; when it cannot, eval runs
// again anyway. heartbeat is called after each idle Heartbeat interval.
// Watch runs eval and heartbeat on the calling goroutine only.
func (s *Streamer) Watch(ctx context.Context, eval func(ctx context.Context) ([]Dep, error), heartbeat func() error) error {
	f := newFeed(s.cfg.Buffer)
	joined := make(map[string]bool)
	defer func() {
		for scope := range joined {
			s.hub.leave(f, scope)
		}
		f.discard()
	}()
	deps := make(map[string]bool)
	// evaluate until the deps it read are all joined: a dep joined after it
	// was read might have changed in between, so read again.
	evaluate := func() error {
		for {
			ds, err := eval(ctx)
			if err != nil {
				return err
			}
			clear(deps)
			fresh := false
			for _, d := range ds {
				deps[d.Key] = true
				if !joined[d.Scope] {
					joined[d.Scope] = true
					fresh = true
					if err := s.hub.join(ctx, f, d.Scope); err != nil {
						return err
					}
				}
			}
			if !fresh {
				return nil
			}
		}
	}
	if err := evaluate(); err != nil {
		return err
	}
	hb := time.NewTicker(s.cfg.Heartbeat)
	defer hb.Stop()
	var buf []feedItem
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			if err := heartbeat(); err != nil {
				return err
			}
		case <-f.wake:
			items, overflow := f.take(buf)
			buf = items
			changed := overflow
			for _, it := range items {
				if deps[it.e.info.key] {
					changed = true
				}
			}
			var err error
			if changed {
				err = evaluate()
			}
			for _, it := range items {
				it.d.done(false)
			}
			clear(items)
			if err != nil {
				return err
			}
		}
	}
}
