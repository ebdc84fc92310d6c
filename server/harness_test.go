package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/services/auth"
)

// cheapUsers writes a users file whose hashes are cheap to check, so tests
// can log in often (the built-in development file uses production costs).
func cheapUsers(t *testing.T, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		h, err := auth.HashPassword(n+"-pass", auth.Argon2Params{Memory: 64, Time: 1, Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		role := "user"
		if n == "admin" {
			role = "admin"
		}
		fmt.Fprintf(&b, "%s:\n  password: %q\n  serverData: {role: %s}\n  clientData: {name: %q}\n", n, h, role, n)
	}
	path := t.TempDir() + "/users.yml"
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var testUsers = []string{"alice", "bob", "carol", "dave", "admin"}

// testApp is one in-process sluiced instance serving on a loopback port.
type testApp struct {
	*App
	url      string
	done     chan error
	stopOnce sync.Once
}

// baseConfig returns a config on a fresh database with cheap test users.
func baseConfig(t *testing.T) Config {
	return Config{
		DatabaseURL:   testenv.Postgres(t),
		NATSPrefix:    testenv.Prefix(),
		UsersFile:     cheapUsers(t, testUsers...),
		DevUsers:      devUsers,
		Web:           webRoot(),
		Heartbeat:     time.Second,
		RelayGrace:    300 * time.Millisecond,
		RelayInterval: 100 * time.Millisecond,
		SessionCheck:  200 * time.Millisecond,
		Logger:        testLogger(t),
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startApp(t *testing.T, cfg Config) *testApp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta := &testApp{App: app, url: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	go func() { ta.done <- app.Serve(ln) }()
	t.Cleanup(func() { ta.stop(t) })
	return ta
}

func (a *testApp) stop(t *testing.T) {
	a.stopOnce.Do(func() { a.doStop(t) })
}

func (a *testApp) doStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-ctx.Done():
		t.Errorf("serve did not return after shutdown")
	}
}

// h2c returns an HTTP/2 client without TLS, as a gRPC-style client uses.
func h2c() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// client is one logged-in user's view of a server.
type client struct {
	token  string
	auth   authv1connect.AuthServiceClient
	access accessv1connect.AccessServiceClient
	color  colorv1connect.ColorServiceClient
	user   userv1connect.UserServiceClient
	sync   syncv1connect.SyncServiceClient
}

type bearerInterceptor struct{ token *string }

func (b bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if *b.token != "" {
			req.Header().Set("Authorization", "Bearer "+*b.token)
		}
		return next(ctx, req)
	}
}

func (b bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if *b.token != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+*b.token)
		}
		return conn
	}
}

func (b bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func newClient(base string, opts ...connect.ClientOption) *client {
	c := &client{}
	hc := h2c()
	opts = append(opts, connect.WithInterceptors(bearerInterceptor{token: &c.token}))
	c.auth = authv1connect.NewAuthServiceClient(hc, base, opts...)
	c.user = userv1connect.NewUserServiceClient(hc, base, opts...)
	c.sync = syncv1connect.NewSyncServiceClient(hc, base, opts...)
	c.access = accessv1connect.NewAccessServiceClient(hc, base, opts...)
	c.color = colorv1connect.NewColorServiceClient(hc, base, opts...)
	return c
}

// login returns a client logged in as name (password name-pass).
func login(t *testing.T, base, name string, opts ...connect.ClientOption) *client {
	t.Helper()
	c := newClient(base, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: name, Password: name + "-pass"}))
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	c.token = res.Msg.GetToken()
	return c
}

func (c *client) setAvatar(t *testing.T, url string) *syncv1.RecordVersion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := c.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: url}))
	if err != nil {
		t.Fatalf("set avatar: %v", err)
	}
	return res.Msg.GetWritten()
}

// events reads a stream in the background.
type events struct {
	ch     chan *syncv1.SubscribeResponse
	err    chan error
	cancel context.CancelFunc
}

func (c *client) subscribe(t *testing.T, req *syncv1.SubscribeRequest) *events {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.sync.Subscribe(ctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	ev := &events{ch: make(chan *syncv1.SubscribeResponse, 100000), err: make(chan error, 1), cancel: cancel}
	go func() {
		defer stream.Close()
		for stream.Receive() {
			ev.ch <- stream.Msg()
		}
		ev.err <- stream.Err()
		close(ev.ch)
	}()
	t.Cleanup(cancel)
	return ev
}

// next returns the next event that is neither a heartbeat nor a presence
// signal.
func (e *events) next(t *testing.T, timeout time.Duration) *syncv1.SubscribeResponse {
	t.Helper()
	for {
		m := e.nextAny(t, timeout)
		if !strings.HasPrefix(m.GetEphemeral().GetKind(), "presence.") {
			return m
		}
	}
}

// nextAny returns the next event that is not a heartbeat.
func (e *events) nextAny(t *testing.T, timeout time.Duration) *syncv1.SubscribeResponse {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-e.ch:
			if !ok {
				t.Fatalf("stream ended: %v", <-e.err)
			}
			if m.GetHeartbeat() != nil {
				continue
			}
			return m
		case <-deadline:
			t.Fatalf("no event within %v", timeout)
		}
	}
}

// untilSynced returns the events before the SyncedEvent.
func (e *events) untilSynced(t *testing.T) []*syncv1.SubscribeResponse {
	t.Helper()
	var out []*syncv1.SubscribeResponse
	for {
		m := e.next(t, 20*time.Second)
		if m.GetSynced() != nil {
			return out
		}
		out = append(out, m)
	}
}

// end waits for the stream to end and returns its error.
func (e *events) end(t *testing.T, timeout time.Duration) error {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-e.ch:
			if !ok {
				return <-e.err
			}
		case <-deadline:
			t.Fatalf("stream did not end within %v", timeout)
		}
	}
}

func avatarOf(t *testing.T, r *syncv1.Record) string {
	t.Helper()
	u := &userv1.User{}
	if err := r.GetPayload().UnmarshalTo(u); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return u.GetAvatarUrl()
}

func codeOf(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return connect.CodeUnknown
}

func authv1connectClient(hc *http.Client, base string, token *string) authv1connect.AuthServiceClient {
	return authv1connect.NewAuthServiceClient(hc, base, connect.WithInterceptors(bearerInterceptor{token: token}))
}

// shareOrg makes owner create an organization and invite members, who
// accept, so that they may read each other's profiles.
func shareOrg(t *testing.T, base string, owner *client, members ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	oc := orgv1connect.NewOrgServiceClient(h2c(), base, connect.WithInterceptors(bearerInterceptor{token: &owner.token}))
	o, err := oc.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "shared"}))
	if err != nil {
		t.Fatalf("create org: %v", err)
	}
	for _, m := range members {
		admit(t, ctx, base, oc, o.Msg.GetOrg().GetId(), m, orgv1.Role_ROLE_MEMBER)
	}
}

// watchEnd opens a capability stream (AccessService.Watch) for c, waits for
// its first answers and returns a channel that yields the error it ends with.
func (c *client) watchEnd(t *testing.T, ctx context.Context) <-chan error {
	t.Helper()
	caps, err := c.access.Watch(ctx, connect.NewRequest(&accessv1.WatchRequest{Questions: []*accessv1.Question{
		{Procedure: colorv1connect.ColorServiceSetColorProcedure, Params: map[string]string{"color": "red"}},
	}}))
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Receive() {
		t.Fatalf("capability stream: %v", caps.Err())
	}
	end := make(chan error, 1)
	go func() {
		for caps.Receive() {
		}
		end <- caps.Err()
	}()
	return end
}
