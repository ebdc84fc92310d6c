package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	var samples []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	got := summarize(samples)
	want := summary{n: 100, p50: 50 * time.Millisecond, p90: 90 * time.Millisecond, p99: 99 * time.Millisecond, max: 100 * time.Millisecond}
	if got != want {
		t.Fatalf("summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := summarize([]time.Duration{7}); got.p50 != 7 || got.p99 != 7 || got.max != 7 {
		t.Fatalf("summarize(one sample) = %+v", got)
	}
	if got := summarize(nil); got != (summary{}) {
		t.Fatalf("summarize(nil) = %+v, want zero", got)
	}
}

func TestKeyTrack(t *testing.T) {
	t.Parallel()
	type ev struct {
		version   int64
		coalesced bool
	}
	tests := []struct {
		name      string
		snapshot  int64
		events    []ev
		want      []outcome
		delivered int64
		missed    int64
		coalesced int64
		duplicate int64
		last      int64
	}{
		{"in order from nothing", 0, []ev{{1, false}, {2, false}, {3, false}}, []outcome{inOrder, inOrder, inOrder}, 3, 0, 0, 0, 3},
		{"in order after snapshot", 41, []ev{{42, false}, {43, false}}, []outcome{inOrder, inOrder}, 2, 0, 0, 0, 43},
		{"gap", 5, []ev{{6, false}, {9, false}, {10, false}}, []outcome{inOrder, gap, inOrder}, 3, 2, 0, 0, 10},
		{"coalesced gap", 5, []ev{{8, true}}, []outcome{gap}, 1, 0, 2, 0, 8},
		{"duplicate and stale", 5, []ev{{6, false}, {6, false}, {4, false}, {7, false}}, []outcome{inOrder, stale, stale, inOrder}, 2, 0, 0, 2, 7},
		{"replay of the snapshot", 5, []ev{{5, false}}, []outcome{stale}, 0, 0, 0, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var k keyTrack
			k.snapshot(tt.snapshot)
			for i, e := range tt.events {
				if got := k.observe(e.version, e.coalesced); got != tt.want[i] {
					t.Errorf("event %d (version %d): outcome %d, want %d", i, e.version, got, tt.want[i])
				}
			}
			if k.delivered != tt.delivered || k.missed != tt.missed || k.missedCoalesced != tt.coalesced || k.duplicate != tt.duplicate || k.last != tt.last {
				t.Errorf("got delivered %d missed %d coalesced %d duplicate %d last %d; want %d %d %d %d %d",
					k.delivered, k.missed, k.missedCoalesced, k.duplicate, k.last,
					tt.delivered, tt.missed, tt.coalesced, tt.duplicate, tt.last)
			}
		})
	}
}

func TestAddStreams(t *testing.T) {
	t.Parallel()
	w0 := &writer{log: &sendLog{at: make([]time.Duration, 3)}}
	w1 := &writer{log: &sendLog{at: make([]time.Duration, 1)}}
	keys := []string{"user/a", "user/b"}
	mk := func(index int, lat [][]time.Duration, tracks []keyTrack, initial []int64) *subscriber {
		s := newSubscriber(index, session{}, keys, nil, nil, 100)
		s.lat, s.tracks, s.initial = lat, tracks, initial
		for _, l := range lat {
			for _, d := range l {
				if d >= 0 {
					s.kept++
					s.worst = max(s.worst, d)
				}
			}
		}
		return s
	}
	msec := time.Millisecond
	subs := []*subscriber{
		// Saw every version of both records.
		mk(0, [][]time.Duration{{1 * msec, 2 * msec, 3 * msec}, {4 * msec}},
			[]keyTrack{{last: 13, delivered: 3}, {last: 1, delivered: 1}}, []int64{10, 0}),
		// Missed one version of user/a and never got the last one; late on user/b.
		mk(1, [][]time.Duration{{5 * msec, -1}, {1500 * msec}},
			[]keyTrack{{last: 12, delivered: 1, missed: 1}, {last: 1, delivered: 1}}, []int64{10, 0}),
	}
	var r result
	r.addStreams(subs, []*writer{w0, w1}, []int64{13, 1}, 0, 1, 0)
	if r.deliveries != 6 || r.missed != 1 || r.expected != 8 {
		t.Errorf("deliveries %d missed %d expected %d; want 6, 1, 8", r.deliveries, r.missed, r.expected)
	}
	if r.notFinal != 1 || r.notFinalVersions != 1 {
		t.Errorf("short of final: %d pairs, %d versions; want 1, 1", r.notFinal, r.notFinalVersions)
	}
	if r.lat.n != 6 || r.lat.max != 1500*msec {
		t.Errorf("latency summary %+v; want 6 samples, max 1.5s", r.lat)
	}
	// Per write, the slowest stream: w0 seq0 5ms, seq1 2ms, seq2 3ms, w1 seq0 1.5s.
	if r.fanout.n != 4 || r.fanout.p50 != 3*msec || r.fanout.max != 1500*msec {
		t.Errorf("fan-out summary %+v; want 4 writes, p50 3ms, max 1.5s", r.fanout)
	}
	if r.slowStreams != 1 || r.slowConns != 1 {
		t.Errorf("slow streams %d on %d connections; want 1 on 1", r.slowStreams, r.slowConns)
	}
}
