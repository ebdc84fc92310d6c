package engine

import (
	"testing"
	"time"
)

// BenchmarkFanout hands one change to 1000 streams' feeds and has every
// stream take it and be done with it: the hub's per-change work and the
// streams' queue work, without the network. "untimed" leaves out the
// time-to-last-delivery tracking, to show its cost.
func BenchmarkFanout(b *testing.B) {
	for _, tracked := range []bool{true, false} {
		name := "timed"
		if !tracked {
			name = "untimed"
		}
		b.Run(name, func(b *testing.B) {
			h := &Hub{}
			hs := &hubScope{h: h, feeds: map[*feed]struct{}{}}
			feeds := make([]*feed, 1000)
			for i := range feeds {
				feeds[i] = newFeed(1024)
				hs.feeds[feeds[i]] = struct{}{}
			}
			e := recordEv("user/a", 1, 1, time.Now())
			var buf []feedItem
			b.ReportAllocs()
			for b.Loop() {
				if tracked {
					hs.emit(e)
				} else {
					for f := range hs.feeds {
						f.offer(e, nil)
					}
				}
				for _, f := range feeds {
					buf, _ = f.take(buf)
					for _, it := range buf {
						it.d.done(it.coalesced)
					}
				}
			}
		})
	}
}
