package main

import (
	"math"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// Fields 3 to 52 of a real /proc/<pid>/stat, with utime 250 and stime
	// 40 (fields 14 and 15); the cutime and cstime after them must not count.
	const rest = " S 1 23190 19589 0 -1 4194304 101 0 0 0 250 40 7 9 20 0 1 0 88130 3133440 415 18446744073709551615 94382439743488 94382439763369 140729290301376 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94382439779376 94382439780992 94383337910272 140729290308290 140729290308310 140729290308310 140729290309611 0\n"
	tests := []struct {
		name  string
		stat  string
		ticks int64
		ok    bool
	}{
		{"plain", "23201 (sluiced)" + rest, 290, true},
		{"spaces in the name", "23201 (my server 2)" + rest, 290, true},
		{"parentheses in the name", "23201 (a) 1 2 (b))" + rest, 290, true},
		{"name that looks like fields", "23201 () S 1 2 3 4 5 6 7 8 9 10 11 12 13)" + rest, 290, true},
		{"empty name", "23201 ()" + rest, 290, true},
		{"no parenthesis", "23201 sluiced" + rest, 0, false},
		{"cut short", "23201 (sluiced) S 1 23190 19589 0 -1 4194304 101 0 0 0 250", 0, false},
		{"not a number", "23201 (sluiced) S 1 23190 19589 0 -1 4194304 101 0 0 0 x 40 7 9", 0, false},
		{"negative", "23201 (sluiced) S 1 23190 19589 0 -1 4194304 101 0 0 0 -250 40 7 9", 0, false},
		{"empty", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ticks, ok := parseStatCPU(tt.stat)
			if ticks != tt.ticks || ok != tt.ok {
				t.Errorf("parseStatCPU = %d, %v; want %d, %v", ticks, ok, tt.ticks, tt.ok)
			}
		})
	}
}

func TestCPUTimeSelf(t *testing.T) {
	t.Parallel()
	if _, ok := cpuTime("self"); !ok {
		t.Skip("no /proc/self/stat here")
	}
	if _, ok := cpuTime("0"); ok {
		t.Error("cpuTime(pid 0) = ok; want unknown")
	}
}

func TestParseFileLimit(t *testing.T) {
	t.Parallel()
	const head = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \n"
	tests := []struct {
		name   string
		limits string
		want   uint64
		ok     bool
	}{
		{"soft below hard", head + "Max open files            1024                 524288               files     \n", 1024, true},
		{"unlimited", head + "Max open files            unlimited            unlimited            files     \n", math.MaxUint64, true},
		{"missing", head, 0, false},
		{"garbled", head + "Max open files            many                 524288               files     \n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseFileLimit(tt.limits)
			if got != tt.want || ok != tt.ok {
				t.Errorf("parseFileLimit = %d, %v; want %d, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPerDelivery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cpu        time.Duration
		deliveries int64
		want       time.Duration
		ok         bool
		text       string
	}{
		{"typical", 1610 * time.Millisecond, 105_800, 15217 * time.Nanosecond, true, "15.2 µs"},
		{"one tick over many", 10 * time.Millisecond, 1_000_000, 10 * time.Nanosecond, true, "0.0 µs"},
		{"no CPU used", 0, 100, 0, true, "0.0 µs"},
		{"CPU unknown", -1, 100, 0, false, "n/a"},
		{"no deliveries", time.Second, 0, 0, false, "n/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := perDelivery(tt.cpu, tt.deliveries)
			if got != tt.want || ok != tt.ok {
				t.Errorf("perDelivery(%s, %d) = %s, %v; want %s, %v", tt.cpu, tt.deliveries, got, ok, tt.want, tt.ok)
			}
			if text := micros(got, ok); text != tt.text {
				t.Errorf("micros = %q, want %q", text, tt.text)
			}
		})
	}
}
