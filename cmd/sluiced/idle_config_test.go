package main

import (
	"io"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/auth"
)

// TestSessionIdleSetting: -session-idle defaults to 2h, 0 turns idle
// expiry off, the config file's auth.sessions.idle wins, and an idle
// timeout not shorter than the absolute lifetime is dropped.
func TestSessionIdleSetting(t *testing.T) {
	parse := func(args ...string) time.Duration {
		t.Helper()
		fs, cfg, _ := flags("serve", io.Discard)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		return withIdle(auth.SessionsConfig{TTL: cfg.SessionTTL}, cfg.SessionIdle).Idle
	}
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{nil, 2 * time.Hour},
		{[]string{"-session-idle", "30m"}, 30 * time.Minute},
		{[]string{"-session-idle", "0"}, 0},
		{[]string{"-session-idle", "-1s"}, 0},
		{[]string{"-session-ttl", "1h"}, 0}, // 2h idle within 1h: never acts
		{[]string{"-session-ttl", "1h", "-session-idle", "10m"}, 10 * time.Minute},
	} {
		if got := parse(tc.args...); got != tc.want {
			t.Errorf("%q: idle = %v, want %v", tc.args, got, tc.want)
		}
	}
	// The config file's idle wins over the flag.
	if got := withIdle(auth.SessionsConfig{Idle: 5 * time.Minute}, time.Hour).Idle; got != 5*time.Minute {
		t.Errorf("file idle 5m with -session-idle 1h = %v, want 5m", got)
	}
	// The zero Config is the documented default.
	if got := withIdle(auth.SessionsConfig{}, 0).Idle; got != DefaultSessionIdle {
		t.Errorf("zero Config idle = %v, want %v", got, DefaultSessionIdle)
	}
}
