package main

import (
	"net/url"
	"testing"
)

func TestAvatarURLRoundTrip(t *testing.T) {
	t.Parallel()
	u := avatarURL("0a1b2c3d", 3, 12345)
	if p, err := url.Parse(u); err != nil || p.Scheme != "https" || p.Host == "" {
		t.Fatalf("avatarURL = %q: not an absolute https URL (%v)", u, err)
	}
	w, seq, ok := parseAvatarURL("0a1b2c3d", u)
	if !ok || w != 3 || seq != 12345 {
		t.Fatalf("parseAvatarURL(%q) = %d, %d, %v", u, w, seq, ok)
	}
	for _, other := range []string{
		avatarURL("ffffffff", 3, 12345), // an earlier run
		"https://bench.example/0a1b2c3d/3",
		"https://bench.example/0a1b2c3d/x/1",
		"https://example.com/avatar.png",
		"",
	} {
		if _, _, ok := parseAvatarURL("0a1b2c3d", other); ok {
			t.Errorf("parseAvatarURL(%q) matched this run", other)
		}
	}
}

func TestSendLog(t *testing.T) {
	t.Parallel()
	var l sendLog
	if seq := l.add(5); seq != 0 {
		t.Fatalf("first seq %d, want 0", seq)
	}
	if seq := l.add(9); seq != 1 {
		t.Fatalf("second seq %d, want 1", seq)
	}
	if at, ok := l.get(1); !ok || at != 9 {
		t.Fatalf("get(1) = %v, %v", at, ok)
	}
	if _, ok := l.get(2); ok {
		t.Fatal("get(2) found a write never sent")
	}
}

func TestCheckTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"http://127.0.0.1:8080", false, true},
		{"http://localhost:8080", false, true},
		{"http://[::1]:8080", false, true},
		{"http://10.0.0.5:8080", false, false},
		{"http://example.com:8080", false, false},
		{"http://example.com:8080", true, true},
		{"https://127.0.0.1:8080", false, false},
		{"127.0.0.1:8080", false, false},
		{"http://127.0.0.1:8080/api", false, false},
	}
	for _, tt := range tests {
		if err := checkTarget(tt.addr, tt.remote); (err == nil) != tt.ok {
			t.Errorf("checkTarget(%q, allowRemote=%v) = %v, want ok=%v", tt.addr, tt.remote, err, tt.ok)
		}
	}
}

func TestShellJoin(t *testing.T) {
	t.Parallel()
	got := shellJoin([]string{"sluice-bench", "-spawn-args", "--users /tmp/u.yml", "-user-pattern", "bench%d", "it's"})
	want := `sluice-bench -spawn-args '--users /tmp/u.yml' -user-pattern bench%d 'it'\''s'`
	if got != want {
		t.Fatalf("shellJoin = %s\nwant        %s", got, want)
	}
}
