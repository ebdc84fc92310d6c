package auth

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// logBuffer collects slog output; it is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger returns a debug-level logger writing to b.
func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testStore returns a Store on a fresh, migrated database.
func testStore(t *testing.T) *engine.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return engine.NewStore(pool, engine.StoreConfig{})
}

// authServer is the AuthService behind the production interceptors, on
// an in-process HTTP server.
type authServer struct {
	client   authv1connect.AuthServiceClient
	sessions *Sessions
	url      string
}

type authServerConfig struct {
	login    PasswordAuthenticator
	tokens   TokenAuthenticator
	sessions SessionsConfig
	service  ServiceConfig
}

func newAuthServer(t *testing.T, cfg authServerConfig) *authServer {
	t.Helper()
	policies, err := authz.NewTable(nil, Policies()...)
	if err != nil {
		t.Fatal(err)
	}
	sessions := NewSessions(testStore(t), cfg.sessions)
	log := slog.New(slog.DiscardHandler)
	opts := edge.HandlerOptions(
		edge.ErrorInterceptor(log),
		edge.DeadlineInterceptor(edge.UnaryTimeout),
		NewInterceptor(sessions, policies, cfg.tokens, nil),
	)
	mux := http.NewServeMux()
	mux.Handle(authv1connect.NewAuthServiceHandler(NewService(cfg.login, sessions, policies, edge.NewValidator(), cfg.service), opts...))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &authServer{client: authv1connect.NewAuthServiceClient(srv.Client(), srv.URL), sessions: sessions, url: srv.URL}
}

// bearerHeader sets the Authorization header of h to token.
func bearerHeader(h http.Header, token string) {
	h.Set("Authorization", "Bearer "+token)
}

// cheapUsersFile returns a users file (YAML) whose users have password
// "<name>-pw" with cheap hashes.
func cheapUsersFile(t testing.TB, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + ":\n  password: \"" + mustHash(t, n+"-pw", cheapArgon2) + "\"\n  serverData: {role: member}\n  clientData: {name: " + n + "}\n")
	}
	return b.String()
}
