package main

import (
	"io"
	"testing"
	"time"

	"github.com/sluicehq/sluice/server"
)

// sessionIdle returns the idle timeout of the sessions of an instance with
// fc (nil: none) and cfg.
func sessionIdle(t *testing.T, fc *server.FileConfig, cfg server.Config) time.Duration {
	t.Helper()
	cfg.DevUsers = devUsers
	s, err := server.OpenAuth(fc, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.Sessions.Idle
}

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
		return sessionIdle(t, nil, *cfg)
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
	file := &server.FileConfig{Auth: server.AuthFileConfig{Sessions: server.SessionsFileConfig{Idle: 5 * time.Minute}}}
	if got := sessionIdle(t, file, server.Config{SessionIdle: time.Hour}); got != 5*time.Minute {
		t.Errorf("file idle 5m with -session-idle 1h = %v, want 5m", got)
	}
	// The zero Config is the documented default.
	if got := sessionIdle(t, nil, server.Config{}); got != server.DefaultSessionIdle {
		t.Errorf("zero Config idle = %v, want %v", got, server.DefaultSessionIdle)
	}
}
