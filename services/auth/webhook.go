package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// HTTPConfig configures NewHTTPAuthenticator. The zero value of each field
// but URL is its documented default.
type HTTPConfig struct {
	// URL receives a POST per login. Required; http or https.
	URL string
	// Timeout bounds one call, including reading the reply. Default 3s.
	Timeout time.Duration
	// Header is sent with every call, e.g. a shared secret the webhook
	// checks ("Authorization: Bearer …").
	Header http.Header
	// Client makes the calls. Default: a client that does not follow
	// redirects.
	Client *http.Client
	// Logger receives backend failures (never passwords). Nil discards.
	Logger *slog.Logger
}

// maxWebhookReply bounds the reply read from the webhook.
const maxWebhookReply = 64 << 10

// HTTPAuthenticator is the `http` authenticator: it asks a webhook who the
// user is, in the shape deepstream's HTTP authentication uses. It POSTs
//
//	{"username": "…", "password": "…", "remoteAddr": "…"}
//
// and reads the status: 2xx with {"id", "roles", "serverData",
// "clientData"} is a login (id required; without "roles", roles come from
// serverData.roles / serverData.role as in the users file); 401 and 403
// refuse; 404 means "unknown user" (a Chain asks the next authenticator);
// anything else, a timeout, a connection error or a malformed reply is
// unavailable, never a login. It is safe for concurrent use.
type HTTPAuthenticator struct {
	url     string
	timeout time.Duration
	header  http.Header
	client  *http.Client
	log     *slog.Logger
}

var _ PasswordAuthenticator = (*HTTPAuthenticator)(nil)

// NewHTTPAuthenticator returns the webhook authenticator of cfg.
func NewHTTPAuthenticator(cfg HTTPConfig) (*HTTPAuthenticator, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http authenticator: url must be an absolute http(s) URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			// A redirect of a POST would resend the password elsewhere
			// (307/308) or drop it (301-303); neither is an answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &HTTPAuthenticator{url: cfg.URL, timeout: cfg.Timeout, header: cfg.Header.Clone(), client: cfg.Client, log: cfg.Logger}, nil
}

// Name implements PasswordAuthenticator: "http".
func (h *HTTPAuthenticator) Name() string { return "http" }

type webhookRequest struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	RemoteAddr string `json:"remoteAddr"`
}

type webhookReply struct {
	ID         string         `json:"id"`
	Roles      []string       `json:"roles"`
	ServerData map[string]any `json:"serverData"`
	ClientData map[string]any `json:"clientData"`
}

// Login implements PasswordAuthenticator.
func (h *HTTPAuthenticator) Login(ctx context.Context, username, password string, meta LoginMeta) (Identity, error) {
	body, err := json.Marshal(webhookRequest{Username: username, Password: password, RemoteAddr: meta.RemoteAddr})
	if err != nil {
		return Identity{}, fmt.Errorf("encode webhook request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Identity{}, h.fail(err, 0)
	}
	for k, v := range h.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := h.client.Do(req)
	if err != nil {
		return Identity{}, h.fail(err, 0)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusUnauthorized, res.StatusCode == http.StatusForbidden:
		return Identity{}, ErrRefused
	case res.StatusCode == http.StatusNotFound:
		return Identity{}, ErrUnknownUser
	case res.StatusCode < 200 || res.StatusCode > 299:
		return Identity{}, h.fail(fmt.Errorf("status %d", res.StatusCode), res.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxWebhookReply+1))
	if err != nil {
		return Identity{}, h.fail(fmt.Errorf("read reply: %w", err), res.StatusCode)
	}
	if len(data) > maxWebhookReply {
		return Identity{}, h.fail(fmt.Errorf("reply larger than %d bytes", maxWebhookReply), res.StatusCode)
	}
	var rep webhookReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return Identity{}, h.fail(errors.New("reply is not the expected JSON object"), res.StatusCode)
	}
	id := Identity{ID: rep.ID, ServerData: rep.ServerData, ClientData: rep.ClientData}
	if err := checkIdentity(id); err != nil {
		return Identity{}, h.fail(errors.New("reply without a valid id"), res.StatusCode)
	}
	if id.ServerData == nil {
		id.ServerData = map[string]any{}
	}
	if id.ClientData == nil {
		id.ClientData = map[string]any{}
	}
	if rep.Roles != nil {
		id.Roles = normalizeRoles(rep.Roles)
	} else {
		id.Roles = rolesOf(id.ServerData)
	}
	return id, nil
}

// fail logs why the webhook could not answer and returns unavailable. The
// request body (the password) is never logged, nor the reply.
func (h *HTTPAuthenticator) fail(err error, status int) error {
	h.log.Warn("http authenticator unavailable", "url", redactURL(h.url), "status", status, "err", err)
	return unavailable(err)
}

// redactURL hides a password in the userinfo of u.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid url)"
	}
	return p.Redacted()
}
