package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// webhookSecret is the password the webhook tests send; it must never
// appear in a log.
const webhookSecret = "s3cret-Pa55word!"

// fakeIdP is an in-process webhook: it answers by username.
func fakeIdP(t *testing.T) (*httptest.Server, <-chan webhookRequest) {
	t.Helper()
	got := make(chan webhookRequest, 64)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Hook-Key") != "k1" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var req webhookRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad json", http.StatusBadRequest)
			return
		}
		got <- req
		switch req.Username {
		case "alice":
			if req.Password != webhookSecret {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			io.WriteString(w, `{"id": "u-alice", "roles": ["member", "admin", ""], "serverData": {"org": 7}, "clientData": {"name": "Alice"}}`)
		case "bob": // roles from serverData, deepstream style
			io.WriteString(w, `{"id": "u-bob", "serverData": {"role": "guest"}}`)
		case "banned":
			w.WriteHeader(http.StatusForbidden)
		case "slow":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case "broken":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error": "db down"}`)
		case "unavail":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "noid":
			io.WriteString(w, `{"serverData": {}}`)
		case "garbage":
			io.WriteString(w, `<html>login</html>`)
		case "huge":
			io.WriteString(w, `{"id": "x", "clientData": {"pad": "`+strings.Repeat("x", maxWebhookReply)+`"}}`)
		case "redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv, got
}

func TestHTTPAuthenticator(t *testing.T) {
	t.Parallel()
	srv, got := fakeIdP(t)
	var logs logBuffer
	h, err := NewHTTPAuthenticator(HTTPConfig{
		URL:     srv.URL,
		Timeout: 200 * time.Millisecond,
		Header:  http.Header{"X-Hook-Key": {"k1"}},
		Logger:  logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	meta := LoginMeta{RemoteAddr: "203.0.113.9"}

	t.Run("accept", func(t *testing.T) {
		id, err := h.Login(ctx, "alice", webhookSecret, meta)
		if err != nil {
			t.Fatalf("Login(alice) = %v", err)
		}
		if id.ID != "u-alice" || !slices.Equal(id.Roles, []string{"admin", "member"}) ||
			id.ServerData["org"] != float64(7) || id.ClientData["name"] != "Alice" {
			t.Fatalf("identity = %+v", id)
		}
		select {
		case req := <-got:
			if req != (webhookRequest{Username: "alice", Password: webhookSecret, RemoteAddr: "203.0.113.9"}) {
				t.Fatalf("webhook received %+v", req)
			}
		case <-time.After(time.Second):
			t.Fatal("webhook not called")
		}
		id, err = h.Login(ctx, "bob", "any", meta)
		if err != nil || id.ID != "u-bob" || !slices.Equal(id.Roles, []string{"guest"}) || id.ClientData == nil {
			t.Fatalf("Login(bob) = %+v, %v; want roles from serverData.role", id, err)
		}
	})

	refusals := []struct {
		user string
		want error
	}{
		{"alice", ErrRefused},  // 401 (wrong password)
		{"banned", ErrRefused}, // 403
		{"nobody", ErrUnknownUser},
	}
	for _, tt := range refusals {
		t.Run("refuse/"+tt.user, func(t *testing.T) {
			id, err := h.Login(ctx, tt.user, "wrong-"+webhookSecret, meta)
			if !errors.Is(err, tt.want) || id.ID != "" {
				t.Fatalf("Login(%s) = %+v, %v; want %v", tt.user, id, err, tt.want)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Fatal("a definitive answer reported as unavailable")
			}
		})
	}

	// Timeouts, 5xx and malformed replies are unavailable, never a login
	// and never a refusal.
	for _, user := range []string{"slow", "broken", "unavail", "noid", "garbage", "huge", "redirect"} {
		t.Run("unavailable/"+user, func(t *testing.T) {
			start := time.Now()
			id, err := h.Login(ctx, user, webhookSecret, meta)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) || errors.Is(err, ErrUnknownUser) || id.ID != "" {
				t.Fatalf("Login(%s) = %+v, %v; want unavailable", user, id, err)
			}
			if code := connect.CodeOf(err); code != connect.CodeUnavailable {
				t.Fatalf("Login(%s) code = %v, want unavailable", user, code)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Login(%s) took %v; the timeout is 200ms", user, d)
			}
		})
	}

	t.Run("connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		h2, err := NewHTTPAuthenticator(HTTPConfig{URL: dead.URL, Logger: logs.logger()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h2.Login(ctx, "alice", webhookSecret, meta); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Login against a closed port = %v, want unavailable", err)
		}
	})

	out := logs.String()
	if !strings.Contains(out, "http authenticator unavailable") || !strings.Contains(out, "status=500") {
		t.Fatalf("failures not logged:\n%s", out)
	}
	if strings.Contains(out, webhookSecret) {
		t.Fatalf("the password appears in the logs:\n%s", out)
	}
}

func TestHTTPAuthenticatorConfig(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "localhost:8080/login", "ftp://x/login", "http:///nohost", "://bad"} {
		if _, err := NewHTTPAuthenticator(HTTPConfig{URL: u}); err == nil {
			t.Errorf("NewHTTPAuthenticator(%q) accepted", u)
		}
	}
}
