package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/crypto/argon2"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
)

// cred is a username and password from the users file.
type cred struct {
	username, password string
}

// devUsers are the built-in development users of sluiced.
var devUsers = []cred{
	{"userA", "usera-pass"},
	{"userB", "userb-pass"},
	{"userC", "userc-pass"},
	{"admin", "admin-pass"},
}

// expand returns the i-th name of a pattern such as "bench%d".
func expand(pattern string, i int) string {
	return strings.Replace(pattern, "%d", strconv.Itoa(i), 1)
}

// checkPattern requires exactly one %d and no other verb in pattern.
func checkPattern(flagName, pattern string) error {
	if strings.Count(pattern, "%d") != 1 || strings.Count(pattern, "%") != 1 {
		return fmt.Errorf("-%s %q: want exactly one %%d, e.g. bench%%d", flagName, pattern)
	}
	return nil
}

// writerCreds returns the credentials of n writers: the development users,
// or users 1..n of the patterns.
func writerCreds(n int, userPattern, passwordPattern string) ([]cred, error) {
	if userPattern == "" {
		if n > len(devUsers) {
			return nil, fmt.Errorf("-writers %d: the development users allow at most %d; write a users file with -write-users-file and use -user-pattern", n, len(devUsers))
		}
		return devUsers[:n], nil
	}
	if err := checkPattern("user-pattern", userPattern); err != nil {
		return nil, err
	}
	if err := checkPattern("password-pattern", passwordPattern); err != nil {
		return nil, err
	}
	out := make([]cred, n)
	for i := range out {
		out[i] = cred{expand(userPattern, i+1), expand(passwordPattern, i+1)}
	}
	return out, nil
}

// session is a logged-in session.
type session struct {
	userID string
	token  string
}

// login opens a session, retrying while the server is not reachable yet
// (a freshly spawned server) until ctx ends.
func login(ctx context.Context, hc *http.Client, base string, c cred) (session, error) {
	client := authv1connect.NewAuthServiceClient(hc, base)
	for {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := client.Login(callCtx, connect.NewRequest(&authv1.LoginRequest{Username: c.username, Password: c.password}))
		cancel()
		if err == nil {
			return session{userID: res.Msg.GetUserId(), token: res.Msg.GetToken()}, nil
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || ctx.Err() != nil {
			return session{}, fmt.Errorf("login %s: %w", c.username, err)
		}
		select {
		case <-ctx.Done():
			return session{}, fmt.Errorf("login %s: %w", c.username, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// bearer attaches the session's token to a request.
func bearer[T any](s session, msg *T) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer "+s.token)
	return req
}

// Cheap argon2id parameters for bench users: thousands of logins must not
// each take tens of milliseconds of CPU. Never use them for real users.
const (
	benchArgonMemory  = 64 // KiB
	benchArgonTime    = 1
	benchArgonThreads = 1
	benchArgonKeyLen  = 32
)

// cheapHash returns an argon2id PHC string of password with the bench
// parameters.
func cheapHash(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, benchArgonTime, benchArgonMemory, benchArgonThreads, benchArgonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, benchArgonMemory, benchArgonTime, benchArgonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// writeUsersFile writes a sluiced users file (YAML, deepstream shape) of
// users 1..n of the patterns with cheap hashes.
func writeUsersFile(path string, n int, userPattern, passwordPattern string) error {
	if n < 1 || n > 1_000_000 {
		return errors.New("-n: want 1..1000000 users")
	}
	if err := checkPattern("user-pattern", userPattern); err != nil {
		return err
	}
	if err := checkPattern("password-pattern", passwordPattern); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create users file: %w", err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "# BENCHMARK USERS ONLY: cheap argon2id hashes (m=%d KiB, t=%d), written by sluice-bench.\n", benchArgonMemory, benchArgonTime)
	fmt.Fprintf(w, "# Passwords follow %q.\n", passwordPattern)
	for i := 1; i <= n; i++ {
		hash, err := cheapHash(expand(passwordPattern, i))
		if err != nil {
			f.Close()
			return err
		}
		name := expand(userPattern, i)
		fmt.Fprintf(w, "%s:\n  password: %s\n  serverData: {role: user}\n  clientData: {}\n", strconv.Quote(name), strconv.Quote(hash))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}

// shareOrg puts every writer into one organization (created by the first,
// who invites the others, who accept), so that each may read the others' profiles: Sluice lets users read the
// profiles of people they share an organization with.
func shareOrg(ctx context.Context, hc *http.Client, base string, writers []session) error {
	if len(writers) < 2 {
		return nil
	}
	client := orgv1connect.NewOrgServiceClient(hc, base)
	res, err := client.CreateOrg(ctx, bearer(writers[0], &orgv1.CreateOrgRequest{Name: "sluice-bench"}))
	if err != nil {
		return fmt.Errorf("create bench organization: %w", err)
	}
	for _, w := range writers[1:] {
		if _, err := client.AddMember(ctx, bearer(writers[0], &orgv1.AddMemberRequest{
			OrgId: res.Msg.GetOrg().GetId(), UserId: w.userID, Role: orgv1.Role_ROLE_MEMBER,
		})); err != nil {
			return fmt.Errorf("invite %s to the bench organization: %w", w.userID, err)
		}
		// Membership is consented: the invitee accepts.
		if _, err := client.AcceptInvitation(ctx, bearer(w, &orgv1.AcceptInvitationRequest{OrgId: res.Msg.GetOrg().GetId()})); err != nil {
			return fmt.Errorf("%s accepts the bench organization's invitation: %w", w.userID, err)
		}
	}
	return nil
}
