package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

// fieldViolations returns the BadRequest field names of an error.
func fieldViolations(t *testing.T, err error) []string {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("not a connect error: %v", err)
	}
	var fields []string
	for _, d := range ce.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatalf("detail: %v", err)
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	return fields
}

// Each validation rule gives InvalidArgument naming the field, and nothing
// is written.
func TestInvalidInputWritesNothing(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	avatars := map[string]string{
		"empty":        "",
		"relative":     "/a.png",
		"ftp":          "ftp://example.com/a.png",
		"javascript":   "javascript:alert(1)",
		"no host":      "https:///a.png",
		"userinfo":     "https://user:pw@example.com/a.png",
		"too long":     "https://example.com/" + strings.Repeat("a", 2048),
		"with space":   "https://example.com/a b.png",
		"control char": "https://example.com/\x01",
	}
	for name, url := range avatars {
		_, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: url}))
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("avatar %s: code %v, want invalid_argument", name, codeOf(err))
			continue
		}
		if f := fieldViolations(t, err); len(f) != 1 || f[0] != "avatar_url" {
			t.Errorf("avatar %s: field violations %v, want [avatar_url]", name, f)
		}
	}
	names := map[string]string{
		"empty":        "",
		"too long":     strings.Repeat("é", 65),
		"newline":      "Alice\nBob",
		"nul":          "Ali\x00ce",
		"zero width":   "Ali\u200bce",
		"bidi control": "Ali\u202ece",
	}
	for name, dn := range names {
		_, err := alice.user.SetDisplayName(ctx, connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: dn}))
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("display name %s: code %v, want invalid_argument", name, codeOf(err))
			continue
		}
		if f := fieldViolations(t, err); len(f) != 1 || f[0] != "display_name" {
			t.Errorf("display name %s: field violations %v, want [display_name]", name, f)
		}
	}
	// The limits themselves are accepted: 64 characters (128 bytes), 2048 bytes.
	if _, err := alice.user.SetDisplayName(ctx, connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: strings.Repeat("é", 64)})); err != nil {
		t.Errorf("64-character name refused: %v", err)
	}
	long := "https://example.com/" + strings.Repeat("a", 2048-len("https://example.com/"))
	if _, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: long})); err != nil {
		t.Errorf("2048-byte URL refused: %v", err)
	}
	var n int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM changes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d changes written, want only the 2 valid writes", n)
	}

	// Stream and Get requests are validated too.
	bad := []*syncv1.SubscribeRequest{
		{},
		{Records: []*syncv1.RecordTarget{{Key: ""}}},
		{Records: []*syncv1.RecordTarget{{Key: "user/alice", Version: -1}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice", AfterSeq: -5}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "user/\nalice"}}},
	}
	for i, req := range bad {
		stream, err := alice.sync.Subscribe(ctx, connect.NewRequest(req))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("subscribe %d: code %v, want invalid_argument", i, codeOf(err))
		}
	}
	if _, err := alice.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{})); codeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("empty get: %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon := newClient(app.url)

	// No token: only Login (and health) answer.
	if _, err := anon.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/a.png"})); codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("no token: %v, want unauthenticated", err)
	}
	if _, err := anon.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("whoami without token: %v", err)
	}
	stream, err := anon.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("subscribe without token: %v", err)
	}
	forged := newClient(app.url)
	forged.token = "slc_forged"
	if _, err := forged.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("forged token: %v", err)
	}

	// Wrong password and unknown user are indistinguishable.
	_, errPw := anon.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "wrong"}))
	_, errUser := anon.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "mallory", Password: "alice-pass"}))
	for _, err := range []error{errPw, errUser} {
		if codeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("bad login: %v, want unauthenticated", err)
		}
	}
	if errPw.Error() != errUser.Error() {
		t.Errorf("login errors differ: %q vs %q", errPw, errUser)
	}

	// The session token works, is stored only as a hash, and WhoAmI reads
	// the principal from it.
	alice := login(t, app.url, "alice")
	who, err := alice.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil || who.Msg.GetUserId() != "alice" || who.Msg.GetClientData().GetFields()["name"].GetStringValue() != "alice" {
		t.Fatalf("whoami = %v, %v", who, err)
	}
	var stored int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM sessions WHERE token_hash = convert_to($1, 'UTF8')`, alice.token).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("plain token stored (%d, %v)", stored, err)
	}

	// Logout ends the session and its open streams, of every kind.
	s := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	s.untilSynced(t)
	capsEnd := alice.watchEnd(t, ctx)
	if _, err := alice.auth.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{})); err != nil {
		t.Fatal(err)
	}
	if err := s.end(t, 10*time.Second); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("stream after logout ended with %v, want unauthenticated", err)
	}
	select {
	case err := <-capsEnd:
		if codeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("capability stream after logout ended with %v, want unauthenticated", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("capability stream still open after logout")
	}
	if _, err := alice.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("whoami after logout: %v", err)
	}
}

// The built-in development users file has the tutorial's four users.
func TestDevelopmentUsers(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.UsersFile = ""
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newClient(app.url)
	for user, pw := range map[string]string{"userA": "usera-pass", "userB": "userb-pass", "userC": "userc-pass", "admin": "admin-pass"} {
		res, err := c.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: user, Password: pw}))
		if err != nil || res.Msg.GetUserId() != user {
			t.Fatalf("login %s: %v", user, err)
		}
	}
	c.token = ""
	res, _ := c.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "admin", Password: "admin-pass"}))
	c.token = res.Msg.GetToken()
	who, err := c.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil || len(who.Msg.GetRoles()) != 1 || who.Msg.GetRoles()[0] != "admin" {
		t.Fatalf("admin roles = %v, %v", who.Msg.GetRoles(), err)
	}
}

// Requests over the size limit are refused before decoding.
func TestOversizedRequestRefused(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/" + strings.Repeat("a", 100<<10)}))
	if codeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("oversized: %v, want resource_exhausted", err)
	}
	// Also over plain HTTP/1.1 with the Connect protocol's JSON.
	body := bytes.NewReader([]byte(`{"avatarUrl":"https://example.com/` + strings.Repeat("a", 100<<10) + `"}`))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, app.url+"/sluice.user.v1.UserService/SetAvatarUrl", body)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+alice.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusOK {
		t.Fatalf("oversized JSON request accepted")
	}
}

// Shutdown ends streams with Unavailable, the code clients treat as
// "resume"; health answers without a token.
func TestShutdownEndsStreamsResumably(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	health := grpchealth.NewClient(h2c(), app.url)
	if res, err := health.Check(ctx, &grpchealth.CheckRequest{Service: "sluice.sync.v1.SyncService"}); err != nil || res.Status != grpchealth.StatusServing {
		t.Fatalf("health = %v, %v", res, err)
	}
	alice := login(t, app.url, "alice")
	s := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	s.untilSynced(t)
	// Every kind of stream ends, the capability stream too: a stream left
	// open would hold Shutdown until its deadline.
	capsEnd := alice.watchEnd(t, ctx)
	// stop fails the test if Shutdown reaches its deadline.
	go app.stop(t)
	if err := s.end(t, 20*time.Second); codeOf(err) != connect.CodeUnavailable {
		t.Fatalf("stream ended with %v, want unavailable", err)
	}
	select {
	case err := <-capsEnd:
		if codeOf(err) != connect.CodeUnavailable {
			t.Fatalf("capability stream ended with %v, want unavailable", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("capability stream still open after shutdown")
	}
	app.stop(t) // waits for the stop above
}

// Heartbeats arrive on idle streams.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	alice := login(t, app.url, "alice")
	s := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	s.untilSynced(t)
	select {
	case m := <-s.ch:
		if m.GetHeartbeat() == nil {
			t.Fatalf("idle stream got %v, want heartbeat", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat within 5s (interval 1s)")
	}
}
