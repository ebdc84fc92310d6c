package auth

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/crypto/bcrypt"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
)

// mixedUsers is a users file with an argon2id user and a bcrypt user.
func mixedUsers(t *testing.T, argon Argon2Params, bcryptCost int) *Users {
	t.Helper()
	b, err := bcrypt.GenerateFromPassword([]byte("bc-pw"), bcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf("argon:\n  password: %q\nbc:\n  password: %q\n", mustHash(t, "argon-pw", argon), b)
	u, err := ParseUsers([]byte(file), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// costs returns the cost of each hash.
func costs(t *testing.T, hashes []string) []hashCost {
	t.Helper()
	out := make([]hashCost, len(hashes))
	for i, h := range hashes {
		c, err := costOf(h)
		if err != nil {
			t.Fatalf("cost of %q: %v", h, err)
		}
		out[i] = c
	}
	return out
}

// An unknown username, a bcrypt user and an argon2id user make a login do
// the same work: one check of each kind and cost the file holds, in the
// same order; only a user's own hash stands in for the dummy of its cost.
func TestLoginWorkIsTheSameForEveryUsername(t *testing.T) {
	t.Parallel()
	u := mixedUsers(t, cheapArgon2, bcrypt.MinCost)
	_, found, unknown := u.plan("mallory")
	if found {
		t.Fatal("mallory found")
	}
	argonUser, _, argon := u.plan("argon")
	bcUser, _, bc := u.plan("bc")
	want := []hashCost{{Kind: "argon2id", Argon2: cheapArgon2}, {Kind: "bcrypt", Bcrypt: bcrypt.MinCost}}
	for name, plan := range map[string][]string{"unknown": unknown, "argon2id user": argon, "bcrypt user": bc} {
		if got := costs(t, plan); !slices.Equal(got, want) {
			t.Errorf("%s checks %v, want %v", name, got, want)
		}
	}
	if !slices.Contains(argon, argonUser.PasswordHash) || slices.Contains(unknown, argonUser.PasswordHash) {
		t.Errorf("argon2id user's plan %v lacks their hash", argon)
	}
	if !slices.Contains(bc, bcUser.PasswordHash) || slices.Contains(unknown, bcUser.PasswordHash) {
		t.Errorf("bcrypt user's plan %v lacks their hash", bc)
	}
	// Only the user's own hash decides.
	for _, tt := range []struct {
		user, pw string
		ok       bool
	}{{"argon", "argon-pw", true}, {"bc", "bc-pw", true}, {"argon", "bc-pw", false}, {"bc", "argon-pw", false},
		{"mallory", "argon-pw", false}, {"mallory", "", false}, {"bc", "", false}} {
		if _, ok := u.Verify(tt.user, tt.pw); ok != tt.ok {
			t.Errorf("Verify(%s, %s) = %v, want %v", tt.user, tt.pw, ok, tt.ok)
		}
	}

	// A file of one kind checks that kind only, at the file's cost.
	one, err := ParseUsers([]byte(fmt.Sprintf("bc:\n  password: %q\n", mustBcrypt(t, "x"))), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	_, _, plan := one.plan("nobody")
	if got := costs(t, plan); !slices.Equal(got, []hashCost{{Kind: "bcrypt", Bcrypt: bcrypt.MinCost}}) {
		t.Errorf("bcrypt-only file: unknown user checks %v", got)
	}
	// A file without users still costs a production hash check.
	empty, err := ParseUsers([]byte("{}"), ".json")
	if err != nil {
		t.Fatal(err)
	}
	_, _, plan = empty.plan("nobody")
	if got := costs(t, plan); !slices.Equal(got, []hashCost{{Kind: "argon2id", Argon2: DefaultArgon2}}) {
		t.Errorf("empty file: unknown user checks %v", got)
	}
}

// allocated returns the bytes allocated by f.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// The work shows in memory: argon2id allocates its memory cost, so with a
// 4 MiB argon2id user in the file every login, of a known user of either
// kind or of an unknown username, allocates about 4 MiB. (Not parallel:
// other tests would allocate meanwhile.)
func TestLoginMemoryIsTheSameForEveryUsername(t *testing.T) {
	u := mixedUsers(t, Argon2Params{Memory: 4 << 10, Time: 1, Threads: 1}, bcrypt.MinCost)
	ref := allocated(func() { u.Verify("argon", "wrong") })
	if ref < 4<<20 {
		t.Fatalf("an argon2id check allocated %d bytes, want at least 4 MiB", ref)
	}
	for _, name := range []string{"bc", "mallory", "nobody"} {
		got := allocated(func() { u.Verify(name, "wrong") })
		if got < ref*3/4 || got > ref*4/3 {
			t.Errorf("login as %s allocated %d bytes, as an argon2id user %d", name, got, ref)
		}
	}
}

// A JWT whose exp is beyond what a protobuf Timestamp holds still works:
// WhoAmI answers (JSON too) with the latest representable instant.
func TestJWTFarFutureExpiry(t *testing.T) {
	t.Parallel()
	keys := testKeys()
	js := newJWKSServer(t, keys["ec1"])
	srv := newAuthServer(t, authServerConfig{
		login:  None{},
		tokens: newJWT(t, JWTConfig{JWKSURL: js.URL, MinRefetchInterval: time.Hour}),
	})
	c := goodClaims()
	c["exp"] = int64(1) << 50
	token := sign(t, keys["ec1"], c)
	client := authv1connect.NewAuthServiceClient(http.DefaultClient, srv.url, connect.WithProtoJSON())
	req := connect.NewRequest(&authv1.WhoAmIRequest{})
	bearerHeader(req.Header(), token)
	res, err := client.WhoAmI(context.Background(), req)
	if err != nil {
		t.Fatalf("WhoAmI with exp in year 35 million: %v", err)
	}
	if got := res.Msg.GetSessionExpiresAt().AsTime(); !got.Equal(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Fatalf("session_expires_at = %v", got)
	}
}

// TestLoginWaitsForAHashSlot: password checks run at most cap(hashSlots)
// at once. A login waits for a slot to come free; when none does within
// hashWait it is answered unavailable through the AuthService (and the
// caller's throttle budget is not charged), without hashing anything.
// Not parallel: it holds the process-wide slots.
func TestLoginWaitsForAHashSlot(t *testing.T) {
	users, err := ParseUsers([]byte(cheapUsersFile(t, "alice")), ".yml")
	if err != nil {
		t.Fatal(err)
	}
	srv := newAuthServer(t, authServerConfig{login: users, service: ServiceConfig{Throttle: ThrottleConfig{PerUser: Rate{Attempts: 1, Per: time.Hour, Burst: 1}, PerAddress: Rate{Attempts: 1, Per: time.Hour, Burst: 1}}}})
	ctx := context.Background()
	for range cap(hashSlots) {
		hashSlots <- struct{}{}
	}
	held := cap(hashSlots)
	defer func() {
		for range held {
			<-hashSlots
		}
	}()

	for range 3 { // more than the throttle allows: refusals are not charged
		start := time.Now()
		_, err := srv.client.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "alice-pw"}))
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("login with every slot held = %v, want unavailable", err)
		}
		if waited := time.Since(start); waited < hashWait {
			t.Fatalf("answered after %v, before waiting %v for a slot", waited, hashWait)
		}
		if strings.Contains(err.Error(), "saturated") {
			t.Fatalf("internal cause leaked: %v", err)
		}
	}

	// A slot freed while a login waits lets it through.
	go func() {
		time.Sleep(hashWait / 5)
		<-hashSlots
	}()
	held--
	res, err := srv.client.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "alice-pw"}))
	if err != nil || res.Msg.GetUserId() != "alice" {
		t.Fatalf("login after a slot came free = %v, %v", res, err)
	}
	if n := len(hashSlots); n != held {
		t.Fatalf("%d slots held after the login, want %d (its own released)", n, held)
	}
}
