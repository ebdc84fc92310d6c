// Package client is a Go client for Sluice servers: it logs in, sends the
// session token on every call, gives every mutating call an idempotency
// key and retries it (with the same key) when the outcome is unknown or
// the server asks for a retry, and runs record streams that resume with
// their cursors after any non-permanent end, so the handler sees every
// version once and in order.
//
// Use the generated clients of gen/ with the client's HTTP client and
// options:
//
//	c := client.New("http://localhost:8080")
//	if err := c.Login(ctx, "userA", "usera-pass"); err != nil { ... }
//	users := userv1connect.NewUserServiceClient(c.HTTPClient(), c.BaseURL(), c.Options()...)
//	res, err := users.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://…"}))
//
// and Subscribe for streams.
package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
)

// IdempotencyHeader carries the idempotency key of a mutating call.
const IdempotencyHeader = "Idempotency-Key"

// Backoff is how long to wait before attempt n (0-based) of a retry or a
// stream resume: Base·2ⁿ, at most Max, with full jitter on the upper half.
type Backoff struct {
	Base time.Duration // zero means 100ms
	Max  time.Duration // zero means 10s
}

// Delay returns the wait before attempt n.
func (b Backoff) Delay(n int) time.Duration {
	base, most := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if most <= 0 {
		most = 10 * time.Second
	}
	d := base << min(n, 20)
	if d > most || d <= 0 {
		d = most
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Config configures a Client. The zero value is valid.
type Config struct {
	// HTTPClient carries the calls; nil means HTTP/2 without TLS (h2c) for
	// http:// URLs and HTTP/2 over TLS for https:// ones.
	HTTPClient *http.Client
	// Token is a session token (or JWT) to start with; Login sets one.
	Token string
	// Attempts bounds the attempts of a mutating call (1: no retry). Zero
	// means 5.
	Attempts int
	// Backoff spaces retries and stream resumes.
	Backoff Backoff
}

// Client is a connection to one Sluice server. It is safe for concurrent
// use.
type Client struct {
	base string
	hc   *http.Client
	cfg  Config

	mu    sync.RWMutex
	token string
}

// New returns a Client for the server at baseURL (e.g.
// "http://localhost:8080").
func New(baseURL string, cfg Config) *Client {
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	hc := cfg.HTTPClient
	if hc == nil {
		var p http.Protocols
		if strings.HasPrefix(baseURL, "https://") {
			p.SetHTTP2(true)
		} else {
			p.SetUnencryptedHTTP2(true)
		}
		hc = &http.Client{Transport: &http.Transport{Protocols: &p}}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, cfg: cfg, token: cfg.Token}
}

// BaseURL returns the server's base URL.
func (c *Client) BaseURL() string { return c.base }

// HTTPClient returns the HTTP client to build generated clients with.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// Options returns the connect options every generated client of this
// server should use: the session token, idempotency keys and retries.
func (c *Client) Options() []connect.ClientOption {
	return []connect.ClientOption{connect.WithInterceptors(interceptor{c})}
}

// Token returns the current session token ("" before Login).
func (c *Client) Token() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.token
}

// SetToken replaces the session token.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
}

// Login logs in with a username and password and keeps the session token.
func (c *Client) Login(ctx context.Context, username, password string) error {
	auth := authv1connect.NewAuthServiceClient(c.hc, c.base, c.Options()...)
	res, err := auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: username, Password: password}))
	if err != nil {
		return err
	}
	c.SetToken(res.Msg.GetToken())
	return nil
}

// Retryable reports whether a mutating call that failed with err may be
// sent again with the same idempotency key: the server did not do it
// (unavailable, aborted, resource_exhausted) or the outcome is unknown (a
// cut connection, a deadline the server hit while the caller still has
// time). The key makes a retry of something that did commit answer the
// first result instead of writing again.
func Retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeAborted, connect.CodeResourceExhausted, connect.CodeUnknown, connect.CodeDeadlineExceeded:
		return true
	}
	return false
}

// Permanent reports whether a stream that ended with err must not be
// resumed: the request is wrong, access is gone, or the client must log in
// again. Every other end (unavailable, a cut connection, a proxy timeout)
// is resumed with the cursors held.
func Permanent(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeNotFound, connect.CodePermissionDenied, connect.CodeUnauthenticated,
		connect.CodeFailedPrecondition, connect.CodeUnimplemented, connect.CodeOutOfRange, connect.CodeAlreadyExists:
		return true
	}
	return false
}

// newKey returns a fresh idempotency key.
func newKey() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// interceptor adds the token, the idempotency key and retries.
type interceptor struct{ c *Client }

func (i interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if tok := i.c.Token(); tok != "" && req.Header().Get("Authorization") == "" {
			req.Header().Set("Authorization", "Bearer "+tok)
		}
		if req.Spec().IdempotencyLevel == connect.IdempotencyNoSideEffects {
			return next(ctx, req)
		}
		if req.Header().Get(IdempotencyHeader) == "" {
			req.Header().Set(IdempotencyHeader, newKey())
		}
		for attempt := 0; ; attempt++ {
			res, err := next(ctx, req)
			if err == nil || !Retryable(err) || attempt+1 >= i.c.cfg.Attempts || ctx.Err() != nil {
				return res, err
			}
			if serr := sleep(ctx, i.c.cfg.Backoff.Delay(attempt)); serr != nil {
				return nil, errors.Join(err, serr)
			}
		}
	}
}

func (i interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if tok := i.c.Token(); tok != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+tok)
		}
		return conn
	}
}

func (i interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
