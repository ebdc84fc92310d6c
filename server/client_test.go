package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	sluice "github.com/sluicehq/sluice/client"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
)

// loseFirstAnswer is a transport that delivers the first SetAvatarUrl to
// the server and then reports a cut connection instead of its answer, as
// when a connection dies while the response is on its way.
type loseFirstAnswer struct {
	next http.RoundTripper
	mu   sync.Mutex
	lost bool
	keys []string
}

func (l *loseFirstAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := l.next.RoundTrip(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/SetAvatarUrl") {
		return res, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys = append(l.keys, req.Header.Get(sluice.IdempotencyHeader))
	if !l.lost {
		l.lost = true
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return nil, errors.New("connection reset by peer")
	}
	return res, nil
}

// The Go client gives a mutating call an idempotency key and retries it
// with the same key when the answer is lost: the server writes once and
// the caller gets the first attempt's result.
func TestGoClientRetriesWithTheSameKey(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	lose := &loseFirstAnswer{next: &http.Transport{Protocols: &p}}
	c := sluice.New(app.url, sluice.Config{HTTPClient: &http.Client{Transport: lose}, Backoff: sluice.Backoff{Base: 10 * time.Millisecond}})
	if err := c.Login(ctx, "alice", "alice-pass"); err != nil {
		t.Fatal(err)
	}
	users := userv1connect.NewUserServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...)
	res, err := users.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/once.png"}))
	if err != nil {
		t.Fatalf("SetAvatarUrl through a lost answer: %v", err)
	}
	if len(lose.keys) != 2 || lose.keys[0] == "" || lose.keys[0] != lose.keys[1] {
		t.Fatalf("keys sent %q, want the same key twice", lose.keys)
	}
	var versions int64
	if err := app.pool.QueryRow(ctx, `SELECT version FROM records WHERE key = 'user/alice'`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if v := res.Msg.GetWritten().GetVersion(); v != versions || versions != 1 {
		t.Fatalf("answered version %d, stored %d: want one write", v, versions)
	}
	// The visibility token: the write is visible to a stream once
	// WaitForVersion returns, and its payload decodes to its type.
	if err := c.WaitForVersion(ctx, res.Msg.GetWritten().GetKey(), res.Msg.GetWritten().GetVersion()); err != nil {
		t.Fatalf("WaitForVersion: %v", err)
	}
	sc := syncv1connect.NewSyncServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...)
	got, err := sc.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: []string{"user/alice"}}))
	if err != nil || len(got.Msg.GetRecords()) != 1 {
		t.Fatalf("Get: %v %v", got, err)
	}
	payload, err := sluice.Payload(got.Msg.GetRecords()[0])
	if u, ok := payload.(*userv1.User); err != nil || !ok || u.GetAvatarUrl() != "https://example.com/once.png" {
		t.Fatalf("payload %v (%T), %v", payload, payload, err)
	}
	// A second call is a new call: a new key.
	if _, err := users.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/twice.png"})); err != nil {
		t.Fatal(err)
	}
	if len(lose.keys) != 3 || lose.keys[2] == lose.keys[0] {
		t.Fatalf("keys %q: the second call reused the first call's key", lose.keys)
	}
}

// A Go client stream cut mid-flight (the instance's connections reset)
// resumes with its cursors: the handler sees every version once, in
// order, including those written while it was cut.
func TestGoClientStreamResumes(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	proxy := testenv.StartProxy(t, strings.TrimPrefix(app.url, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := sluice.New("http://"+proxy.Addr(), sluice.Config{Backoff: sluice.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err := c.Login(ctx, "alice", "alice-pass"); err != nil {
		t.Fatal(err)
	}
	writer := login(t, app.url, "alice")
	const total = 9
	var mu sync.Mutex
	var got []int64
	synced := make(chan struct{}, 10)
	resumes := 0
	done := make(chan error, 1)
	sctx, stop := context.WithCancel(ctx)
	go func() {
		done <- c.Subscribe(sctx, sluice.Targets{
			Records: []*syncv1.RecordTarget{{Key: "user/alice"}},
			Scopes:  []*syncv1.ScopeTarget{{Scope: "user/alice"}},
		}, sluice.SubscribeOptions{OnResume: func(error) { resumes++ }}, func(ev *syncv1.SubscribeResponse) error {
			if ev.GetSynced() != nil {
				synced <- struct{}{}
			}
			if r := ev.GetRecord().GetRecord(); r != nil {
				mu.Lock()
				got = append(got, r.GetVersion())
				if r.GetVersion() == total {
					stop()
				}
				mu.Unlock()
			}
			return nil
		})
	}()
	<-synced
	for i := 1; i <= total; i++ {
		writer.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i))
		if i%3 == 0 {
			proxy.Cut() // the handler may be anywhere in its stream
		}
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not reach the last version")
	}
	mu.Lock()
	defer mu.Unlock()
	want := make([]int64, total)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("versions %v, want each of %v once, in order", got, want)
	}
	if resumes == 0 {
		t.Fatal("the stream was never cut: the test proves nothing")
	}
}
