package auth

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
)

// countingAuth counts the logins it is asked and answers with answer.
type countingAuth struct {
	PasswordAuthenticator
	calls atomic.Int64
}

func (c *countingAuth) Login(ctx context.Context, username, password string, meta LoginMeta) (Identity, error) {
	c.calls.Add(1)
	return c.PasswordAuthenticator.Login(ctx, username, password, meta)
}

func TestChain(t *testing.T) {
	t.Parallel()
	users, err := ParseUsers([]byte(cheapUsersFile(t, "alice", "carol")), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	idp, _ := fakeIdP(t)
	hook, err := NewHTTPAuthenticator(HTTPConfig{URL: idp.URL, Timeout: 200 * time.Millisecond, Header: http.Header{"X-Hook-Key": {"k1"}}})
	if err != nil {
		t.Fatal(err)
	}
	file := &countingAuth{PasswordAuthenticator: users}
	web := &countingAuth{PasswordAuthenticator: hook}
	last := &countingAuth{PasswordAuthenticator: None{}}
	chain := NewChain(file, web, last)
	ctx := context.Background()

	tests := []struct {
		name, user, password string
		wantID               string
		wantErr              error
		asked                [3]int64 // file, http, none
	}{
		// The file knows alice: it answers and nobody else is asked.
		{"file accepts", "alice", "alice-pw", "alice", nil, [3]int64{1, 0, 0}},
		// A wrong password is a definitive no: the chain stops. The
		// webhook also has an "alice", with another password: it must
		// not be asked.
		{"file refuses", "alice", webhookSecret, "", ErrRefused, [3]int64{1, 0, 0}},
		// bob is not in the file: the webhook answers.
		{"unknown to file, http accepts", "bob", "x", "u-bob", nil, [3]int64{1, 1, 0}},
		{"unknown to file, http refuses", "banned", "x", "", ErrRefused, [3]int64{1, 1, 0}},
		// Unavailable stops the chain too: a later authenticator never
		// logs in a user an earlier one could not judge.
		{"http unavailable", "broken", "x", "", ErrUnavailable, [3]int64{1, 1, 0}},
		// Unknown to both: none, last, accepts anybody.
		{"unknown to all but none", "zed", "x", "zed", nil, [3]int64{1, 1, 1}},
	}
	for _, tt := range tests {
		file.calls.Store(0)
		web.calls.Store(0)
		last.calls.Store(0)
		id, err := chain.Login(ctx, tt.user, tt.password, LoginMeta{})
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) || id.ID != "" {
				t.Errorf("%s: Login = %+v, %v; want %v", tt.name, id, err, tt.wantErr)
			}
		} else if err != nil || id.ID != tt.wantID {
			t.Errorf("%s: Login = %+v, %v; want id %q", tt.name, id, err, tt.wantID)
		}
		if got := [3]int64{file.calls.Load(), web.calls.Load(), last.calls.Load()}; got != tt.asked {
			t.Errorf("%s: asked (file, http, none) = %v, want %v", tt.name, got, tt.asked)
		}
	}
	if _, err := chain.Login(ctx, "broken", "x", LoginMeta{}); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("unavailable through the chain has code %v", connect.CodeOf(err))
	}

	// Without none at the end, a user nobody knows is unknown.
	short := NewChain(users, hook)
	if _, err := short.Login(ctx, "zed", "x", LoginMeta{}); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Login(zed) = %v, want ErrUnknownUser", err)
	}
	if _, err := NewChain().Login(ctx, "alice", "alice-pw", LoginMeta{}); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("empty chain Login = %v, want ErrUnknownUser", err)
	}
}

// TestLoginThroughChain logs in through the AuthService: a refusal and an
// unknown user look the same to the client, an unavailable backend is
// unavailable.
func TestLoginThroughChain(t *testing.T) {
	t.Parallel()
	users, err := ParseUsers([]byte(cheapUsersFile(t, "alice")), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	idp, _ := fakeIdP(t)
	hook, err := NewHTTPAuthenticator(HTTPConfig{URL: idp.URL, Timeout: 200 * time.Millisecond, Header: http.Header{"X-Hook-Key": {"k1"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := newAuthServer(t, authServerConfig{login: NewChain(users, hook), service: ServiceConfig{Throttle: ThrottleConfig{Disabled: true}}})
	ctx := context.Background()
	for _, tt := range []struct {
		user, password string
		code           connect.Code // 0: ok
		id             string
	}{
		{"alice", "alice-pw", 0, "alice"},
		{"bob", "x", 0, "u-bob"},
		{"alice", "wrong", connect.CodeUnauthenticated, ""},
		{"banned", "x", connect.CodeUnauthenticated, ""},
		{"nobody", "x", connect.CodeUnauthenticated, ""},
		{"slow", "x", connect.CodeUnavailable, ""},
		{"broken", "x", connect.CodeUnavailable, ""},
	} {
		res, err := srv.client.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: tt.user, Password: tt.password}))
		switch {
		case tt.code == 0 && (err != nil || res.Msg.GetUserId() != tt.id || res.Msg.GetToken() == ""):
			t.Errorf("Login(%s) = %v, %v; want user %s", tt.user, res, err, tt.id)
		case tt.code != 0 && connect.CodeOf(err) != tt.code:
			t.Errorf("Login(%s) = %v; want %v", tt.user, err, tt.code)
		}
	}
}

func TestUsersFileReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "users.yml")
	write := func(content string) {
		t.Helper()
		// Write a new file and rename it over the old one, as config
		// management tools do.
		tmp := filepath.Join(dir, "users.tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	aliceOld := "alice:\n  password: \"" + mustHash(t, "old-pw", cheapArgon2) + "\"\n"
	aliceNew := "alice:\n  password: \"" + mustHash(t, "new-pw", cheapArgon2) + "\"\n  serverData: {role: admin}\n"
	write(aliceOld)
	var logs logBuffer
	f, err := OpenUsersFile(path, UsersFileConfig{Interval: 20 * time.Millisecond, Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	login := func(user, pw string) error {
		_, err := f.Login(ctx, user, pw, LoginMeta{})
		return err
	}
	if err := login("alice", "old-pw"); err != nil {
		t.Fatalf("Login(old-pw) = %v", err)
	}

	write(aliceNew)
	waitFor(t, 10*time.Second, "the new password to work", func() bool { return login("alice", "new-pw") == nil })
	if err := login("alice", "old-pw"); !errors.Is(err, ErrRefused) {
		t.Fatalf("old password after reload = %v, want ErrRefused", err)
	}
	if id, _ := f.Login(ctx, "alice", "new-pw", LoginMeta{}); len(id.Roles) != 1 || id.Roles[0] != "admin" {
		t.Fatalf("roles after reload = %v", id.Roles)
	}

	// An invalid file (a plain-text password) is logged and the users
	// loaded last stay in force.
	write("alice:\n  password: hunter2\nbob:\n  password: \"" + mustHash(t, "bob-pw", cheapArgon2) + "\"\n")
	waitFor(t, 10*time.Second, "the reload error to be logged", func() bool {
		return strings.Contains(logs.String(), "reload failed")
	})
	if err := login("alice", "new-pw"); err != nil {
		t.Fatalf("alice after a bad reload = %v; the old users must stay", err)
	}
	if err := login("bob", "bob-pw"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("bob from the bad file = %v, want ErrUnknownUser", err)
	}
	if err := login("alice", "hunter2"); err == nil {
		t.Fatal("plain-text password from the bad file accepted")
	}
	if strings.Contains(logs.String(), "hunter2") {
		t.Fatalf("the plain-text password was logged:\n%s", logs.String())
	}

	// A file rewritten in place (no rename) is picked up too.
	if err := os.WriteFile(path, []byte(cheapUsersFile(t, "carol")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "carol to be loaded", func() bool { return login("carol", "carol-pw") == nil })
	if err := login("alice", "new-pw"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("alice removed from the file = %v, want ErrUnknownUser", err)
	}

	// After Close, the users stay but the file is no longer watched.
	f.Close()
	f.Close() // idempotent
	write(aliceOld)
	time.Sleep(100 * time.Millisecond)
	if err := login("carol", "carol-pw"); err != nil {
		t.Fatalf("carol after Close = %v", err)
	}
}
