package main

import (
	"bytes"
	"context"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/client/cli"
)

// sluiceCLI runs the sluice command against base and returns its exit
// status, stdout and stderr.
func sluiceCLI(ctx context.Context, base, token, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	all := append([]string{"-url", base, "-token", token}, args...)
	code := cli.Run(ctx, all, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// The sluice command logs in, calls any RPC with JSON, reads records,
// pages a scope and streams changes; refusals are exit status 1 with the
// server's message, usage errors 2.
func TestSluiceCommand(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	code, token, errOut := sluiceCLI(ctx, app.url, "", "alice-pass\n", "login", "alice")
	token = strings.TrimSpace(token)
	if code != 0 || !strings.HasPrefix(token, "slc_") {
		t.Fatalf("login = %d %q %q", code, token, errOut)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, token, "", "whoami"); code != 0 || !strings.Contains(out, `"alice"`) {
		t.Fatalf("whoami = %d %q", code, out)
	}
	code, out, errOut := sluiceCLI(ctx, app.url, token, "", "call", "sluice.user.v1.UserService/SetDisplayName", `{"displayName":"Alice A."}`)
	if code != 0 || !strings.Contains(out, `"user/alice"`) {
		t.Fatalf("call = %d %q %q", code, out, errOut)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, token, "", "get", "user/alice"); code != 0 || !strings.Contains(out, "Alice A.") {
		t.Fatalf("get = %d %q", code, out)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, token, "", "list", "-limit", "5", "user/alice"); code != 0 || !strings.Contains(out, "Alice A.") {
		t.Fatalf("list = %d %q", code, out)
	}
	// A refusal: the server's code and message, status 1.
	code, _, errOut = sluiceCLI(ctx, app.url, token, "", "call", "sluice.user.v1.UserService/SetAvatarUrl", `{"avatarUrl":"ftp://x"}`)
	if code != 1 || !strings.Contains(errOut, "invalid_argument") {
		t.Fatalf("bad call = %d %q, want status 1 and invalid_argument", code, errOut)
	}
	if code, _, _ := sluiceCLI(ctx, app.url, token, "", "call", "nope.v1.Nope/Call"); code != 2 {
		t.Fatalf("unknown service: status %d, want 2", code)
	}

	// subscribe prints the catch-up and then live changes until stopped.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var stream syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(sctx, []string{"-url", app.url, "-token", token, "subscribe", "-record", "user/alice"}, strings.NewReader(""), &stream, &stream)
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(stream.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("subscribe printed %q, want %s", stream.String(), what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(`"synced"`)
	if code, _, errOut := sluiceCLI(ctx, app.url, token, "", "call", "sluice.user.v1.UserService/SetDisplayName", `{"displayName":"Alice B."}`); code != 0 {
		t.Fatalf("call = %d %q", code, errOut)
	}
	waitFor("Alice B.")
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("subscribe ended with status %d: %q", code, stream.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu gosync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
