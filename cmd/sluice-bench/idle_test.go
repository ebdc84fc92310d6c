package main

import (
	"io"
	"math"
	"slices"
	"testing"
)

func TestParseIdle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec string
		want []int // nil: an error
	}{
		{"1000,5000", []int{1000, 5000}},
		{"200", []int{200}},
		{" 200, 500 ,1000", []int{200, 500, 1000}},
		{"1,50000", []int{1, 50000}},
		{"5000,1000", nil},
		{"1000,1000", nil},
		{"0,100", nil},
		{"-5", nil},
		{"50001", nil},
		{"1000,", nil},
		{"1e3", nil},
		{"", nil},
		{"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33", nil},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := parseIdle(tt.spec)
			if tt.want == nil {
				if err == nil {
					t.Errorf("parseIdle(%q) = %v; want an error", tt.spec, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("parseIdle(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func TestKiBPerStream(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name          string
		baseline, rss int64
		n             int
		want          float64
		ok            bool
	}{
		{"1000 streams, 40 MiB more", 50 * mib, 90 * mib, 1000, 40.96, true},
		{"one stream", 1 << 30, 1<<30 + 8192, 1, 8, true},
		{"memory returned meanwhile", 90 * mib, 86 * mib, 512, -8, true},
		{"no growth", 50 * mib, 50 * mib, 10, 0, true},
		{"baseline unknown", -1, 90 * mib, 1000, 0, false},
		{"RSS unknown", 50 * mib, -1, 1000, 0, false},
		{"no streams", 50 * mib, 90 * mib, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := kibPerStream(tt.baseline, tt.rss, tt.n)
			if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("kibPerStream(%d, %d, %d) = %g, %v; want %g, %v", tt.baseline, tt.rss, tt.n, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestIdleNeedsServerPID(t *testing.T) {
	t.Parallel()
	if _, err := parseFlags([]string{"-idle", "100"}, io.Discard); err == nil {
		t.Error("-idle without -spawn or -server-pid: want an error")
	}
	c, err := parseFlags([]string{"-idle", "100,200", "-server-pid", "42"}, io.Discard)
	if err != nil || !slices.Equal(c.idle, []int{100, 200}) {
		t.Errorf("-idle 100,200 -server-pid 42: %v, %v", c, err)
	}
	if c, err := parseFlags(nil, io.Discard); err != nil || c.idle != nil {
		t.Errorf("no -idle: idle %v, %v; want a write run", c.idle, err)
	}
}
