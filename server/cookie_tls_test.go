package server

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/services/auth"
)

// TestCookieSessionTLS: with TLS on, a page on https gets the Secure
// __Host- cookie, and a page claiming plain http is refused.
func TestCookieSessionTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	p.issue(t, "server", true)
	cfg := baseConfig(t)
	cfg.TLSCert, cfg.TLSKey = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	app := startApp(t, cfg)
	base := "https" + app.url[len("http"):]
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.caPool}, ForceAttemptHTTP2: true}}
	page := &browserPage{origin: base}
	page.client = newClient(base)
	page.auth = authv1connect.NewAuthServiceClient(hc, base, connect.WithInterceptors(browserHeaders{origin: &page.origin, cookie: &page.cookie}))

	_, c, err := page.cookieLogin(t, "alice")
	if err != nil {
		t.Fatalf("cookie login over TLS: %v", err)
	}
	if c.Name != auth.CookieName || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie over TLS: %s Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q", c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
	page.cookie = c.Name + "=" + c.Value
	if who, err := page.whoAmI(t); err != nil || who != "alice" {
		t.Fatalf("WhoAmI with the cookie over TLS = %q, %v", who, err)
	}
	page.origin = app.url // http:// on a TLS request
	if _, err := page.whoAmI(t); codeOf(err) != connect.CodePermissionDenied {
		t.Errorf("WhoAmI over TLS from an http Origin = %v, want permission_denied", err)
	}
}
