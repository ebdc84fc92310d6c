package client

import (
	"sync/atomic"
	"testing"
	"time"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// BenchmarkStreamEvent is the client's own work per received event (the
// cursor update and dedup, and the watchdog's timestamp), on top of the
// decoding connect-go does anyway.
func BenchmarkStreamEvent(b *testing.B) {
	s := &stream{records: []string{"user/a", "user/b"}, versions: map[string]int64{"user/a": 0, "user/b": 0},
		seqs: map[string]int64{}, limits: map[string]int32{}}
	rec := &syncv1.Record{Key: "user/a", Scope: "user/a"}
	ev := &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{Record: rec}}}
	var last atomic.Int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec.Version = int64(i + 1)
		last.Store(time.Now().UnixNano())
		if deliver, _ := s.apply(ev); !deliver {
			b.Fatal("not delivered")
		}
	}
}
