package server

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/client/cli"
	"github.com/sluicehq/sluice/internal/testenv"
)

// sluiceCLI runs the sluice command against base (with its token stored
// in dir) and returns its exit status, stdout and stderr.
func sluiceCLI(ctx context.Context, base, dir, stdin string, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	all := append([]string{"-url", base, "-config-dir", dir}, args...)
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

	dir := t.TempDir() // where login stores the token
	code, out, errOut := sluiceCLI(ctx, app.url, dir, "alice-pass\n", "login", "alice")
	if code != 0 || !strings.Contains(out, "logged in as alice") {
		t.Fatalf("login = %d %q %q", code, out, errOut)
	}
	if fi, err := os.Stat(filepath.Join(dir, "token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stored token: %v, %v; want a file of mode 0600", fi, err)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, dir, "", "whoami"); code != 0 || !strings.Contains(out, `"alice"`) {
		t.Fatalf("whoami = %d %q", code, out)
	}
	code, out, errOut = sluiceCLI(ctx, app.url, dir, "", "call", "sluice.user.v1.UserService/SetDisplayName", `{"displayName":"Alice A."}`)
	if code != 0 || !strings.Contains(out, `"user/alice"`) {
		t.Fatalf("call = %d %q %q", code, out, errOut)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, dir, "", "get", "user/alice"); code != 0 || !strings.Contains(out, "Alice A.") {
		t.Fatalf("get = %d %q", code, out)
	}
	if code, out, _ := sluiceCLI(ctx, app.url, dir, "", "list", "-limit", "5", "user/alice"); code != 0 || !strings.Contains(out, "Alice A.") {
		t.Fatalf("list = %d %q", code, out)
	}
	// A refusal: the server's code and message, status 1.
	code, _, errOut = sluiceCLI(ctx, app.url, dir, "", "call", "sluice.user.v1.UserService/SetAvatarUrl", `{"avatarUrl":"ftp://x"}`)
	if code != 1 || !strings.Contains(errOut, "invalid_argument") {
		t.Fatalf("bad call = %d %q, want status 1 and invalid_argument", code, errOut)
	}
	if code, _, _ := sluiceCLI(ctx, app.url, dir, "", "call", "nope.v1.Nope/Call"); code != 2 {
		t.Fatalf("unknown service: status %d, want 2", code)
	}

	// subscribe prints the catch-up and then live changes until stopped.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var stream syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(sctx, []string{"-url", app.url, "-config-dir", dir, "tail", "-record", "user/alice"}, strings.NewReader(""), &stream, &stream)
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
	if code, _, errOut := sluiceCLI(ctx, app.url, dir, "", "call", "sluice.user.v1.UserService/SetDisplayName", `{"displayName":"Alice B."}`); code != 0 {
		t.Fatalf("call = %d %q", code, errOut)
	}
	waitFor("Alice B.")
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("tail ended with status %d: %q", code, stream.String())
	}
	if code, _, errOut := sluiceCLI(ctx, app.url, dir, "", "logout"); code != 0 {
		t.Fatalf("logout = %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "token")); !os.IsNotExist(err) {
		t.Fatalf("the token file is still there after logout: %v", err)
	}
	if code, _, errOut := sluiceCLI(ctx, app.url, dir, "", "whoami"); code != 1 || !strings.Contains(errOut, "unauthenticated") {
		t.Fatalf("whoami after logout = %d %q, want unauthenticated", code, errOut)
	}
}

// sluice tail survives a server restart: the stream resumes on the new
// server with its cursors and prints every version once.
func TestSluiceTailSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	first := startApp(t, cfg)
	proxy := testenv.StartProxy(t, strings.TrimPrefix(first.url, "http://"))
	url := "http://" + proxy.Addr()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	if code, _, errOut := sluiceCLI(ctx, url, dir, "alice-pass\n", "login", "alice"); code != 0 {
		t.Fatalf("login: %q", errOut)
	}
	var stream syncBuffer
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(sctx, []string{"-url", url, "-config-dir", dir, "tail", "user/alice"}, strings.NewReader(""), &stream, io.Discard)
	}()
	waitOut := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(stream.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("tail printed %q, want %s", stream.String(), what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOut(`"synced"`)
	set := func(name string) {
		t.Helper()
		if code, _, errOut := sluiceCLI(ctx, url, dir, "", "call", "sluice.user.v1.UserService/SetDisplayName", `{"displayName":"`+name+`"}`); code != 0 {
			t.Fatalf("call: %q", errOut)
		}
	}
	set("before-restart")
	waitOut("before-restart")
	first.stop(t) // streams end with unavailable
	second := startApp(t, cfg)
	proxy.SetTarget(strings.TrimPrefix(second.url, "http://"))
	set("after-restart")
	waitOut("after-restart")
	stop()
	<-done
	for _, name := range []string{"before-restart", "after-restart"} {
		if n := strings.Count(stream.String(), name); n != 1 {
			t.Errorf("%s printed %d times, want once:\n%s", name, n, stream.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
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
