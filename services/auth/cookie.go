package auth

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/sluicehq/sluice/services/edge"
)

// Cookie sessions: a browser page served by this server may keep its
// session token in an HttpOnly cookie instead of in script memory, so an
// injected script cannot read it and a reload keeps the user signed in.
// docs/SECURITY.md ("Cookie sessions") states the threat model.
//
// A cookie travels with every request the browser makes to this server,
// forged ones included, so the cookie is a credential only together with
// an Origin header naming this server's own origin: browsers set Origin on
// every POST (every Connect call, streams included) and scripts cannot
// forge it. SameSite=Strict keeps other sites from sending the cookie at
// all; the Origin check also refuses the sibling origins SameSite lets
// through (another port, another subdomain of the same site).

// Session cookie names. Over https the cookie carries the __Host- prefix:
// the browser then accepts it only with Secure, Path=/ and no Domain, so a
// sibling subdomain cannot plant or shadow it. Plain http (loopback
// development only) cannot use the prefix.
const (
	CookieName         = "__Host-sluice_session"
	CookieNameLoopback = "sluice_session"
)

// browserKey is the context key of a request's browser facts.
type browserKey struct{}

// browser is what the HTTP layer knows about a request, for cookie
// sessions: whether its Origin is this server's own, over https, and the
// session cookie it carries.
type browser struct {
	sameOrigin bool   // Origin names this server (https, or http on loopback)
	secure     bool   // the page is served over https
	cookie     string // the value of the session cookie of the page's scheme; "" if none
	hasCookie  bool   // a session cookie of either name came along
}

// WithBrowser returns r with its Origin, Host and session cookie recorded
// for the authentication interceptor and Login. The RPC handler must be
// served through it for cookie sessions to work; bearer tokens work either
// way.
func WithBrowser(r *http.Request) *http.Request {
	b := browser{}
	b.sameOrigin, b.secure = sameOrigin(r.Header.Get("Origin"), r.Host, r.TLS != nil)
	name := CookieNameLoopback
	if b.secure {
		name = CookieName
	}
	// Only the cookie of the page's scheme counts: over https a plain
	// sluice_session cookie (which anyone on the site could set) is ignored.
	// Either one makes the request cookie-authenticated, so a foreign
	// Origin is refused whichever it carries.
	for _, c := range r.Cookies() {
		if c.Name != CookieName && c.Name != CookieNameLoopback {
			continue
		}
		b.hasCookie = true
		if c.Name == name && b.cookie == "" {
			b.cookie = c.Value
		}
	}
	return r.WithContext(context.WithValue(r.Context(), browserKey{}, b))
}

func browserFrom(ctx context.Context) browser {
	b, _ := ctx.Value(browserKey{}).(browser)
	return b
}

// sameOrigin reports whether origin (an Origin header) names the server
// reached at host (the request's Host), and whether it is https. Plain
// http is accepted only for a loopback host: a session cookie must not
// cross a network in clear. A TLS request with an http Origin is refused.
// Behind a proxy that terminates TLS the request is plain and the Origin
// https; the proxy must pass Host through unchanged.
func sameOrigin(origin, host string, tls bool) (ok, secure bool) {
	if origin == "" || host == "" {
		return false, false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return false, false
	}
	if !strings.EqualFold(stripDefaultPort(u.Host, u.Scheme), stripDefaultPort(host, u.Scheme)) {
		return false, false
	}
	switch u.Scheme {
	case "https":
		return true, true
	case "http":
		return !tls && isLoopbackHost(u.Hostname()), false
	}
	return false, false
}

// stripDefaultPort drops the scheme's default port: browsers omit it in
// Origin, clients may send it in Host.
func stripDefaultPort(hostport, scheme string) string {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if (scheme == "https" && p == "443") || (scheme == "http" && p == "80") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}

func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(h, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// errCrossOrigin refuses a call that would be authenticated by the session
// cookie but does not come from this server's own page.
var errCrossOrigin = edge.Denied("the session cookie is accepted only from this server's own pages: the request's Origin must be this server (https, or http on a loopback host); other clients send Authorization: Bearer")

// cookieCredential returns the Authorization value the session cookie of
// ctx's request stands for ("" if it carries none, or nothing usable), or
// errCrossOrigin if it carries one but is not same-origin. Only session
// tokens count: a cookie never carries a JWT or a service credential.
func cookieCredential(ctx context.Context) (string, error) {
	b := browserFrom(ctx)
	if !b.hasCookie {
		return "", nil
	}
	if !b.sameOrigin {
		return "", errCrossOrigin
	}
	if !strings.HasPrefix(b.cookie, tokenPrefix) || len(b.cookie) > maxSessionToken {
		return "", nil
	}
	return "Bearer " + b.cookie, nil
}

// sessionCookie returns the cookie that carries token until expires, for
// a page over https (secure) or loopback http.
func sessionCookie(token string, expires time.Time, secure bool) *http.Cookie {
	c := &http.Cookie{
		Name:     CookieNameLoopback,
		Value:    token,
		Path:     "/",
		Expires:  expires.UTC(),
		MaxAge:   max(1, int(time.Until(expires).Seconds())),
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	}
	if secure {
		c.Name, c.Secure = CookieName, true
	}
	return c
}

// clearCookie returns the cookie that deletes the session cookie.
func clearCookie(secure bool) *http.Cookie {
	c := sessionCookie("", time.Unix(0, 0), secure)
	c.MaxAge = -1 // Max-Age=0 on the wire: delete now
	return c
}
