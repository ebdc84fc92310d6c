package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/services/auth"
)

// browserHeaders makes a client send what a browser page would: an Origin
// header and cookies (both may be changed between calls).
type browserHeaders struct {
	origin *string
	cookie *string
}

func (b browserHeaders) set(h http.Header) {
	if *b.origin != "" {
		h.Set("Origin", *b.origin)
	}
	if *b.cookie != "" {
		h.Set("Cookie", *b.cookie)
	}
}

func (b browserHeaders) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		b.set(req.Header())
		return next(ctx, req)
	}
}

func (b browserHeaders) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		b.set(conn.RequestHeader())
		return conn
	}
}

func (b browserHeaders) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// browserPage is a client that authenticates by cookie only (no bearer
// token) with the Origin and Cookie headers it is given.
type browserPage struct {
	*client
	origin, cookie string
}

func newBrowserPage(base string) *browserPage {
	p := &browserPage{origin: base}
	p.client = newClient(base, connect.WithInterceptors(browserHeaders{origin: &p.origin, cookie: &p.cookie}))
	return p
}

// cookieLogin logs name in asking for a cookie session and returns the
// response and its Set-Cookie.
func (p *browserPage) cookieLogin(t *testing.T, name string) (*connect.Response[authv1.LoginResponse], *http.Cookie, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: name, Password: name + "-pass", Cookie: true}))
	if err != nil {
		return nil, nil, err
	}
	sc := res.Header().Values("Set-Cookie")
	if len(sc) != 1 {
		t.Fatalf("Set-Cookie = %q, want one cookie", sc)
	}
	c, err := http.ParseSetCookie(sc[0])
	if err != nil {
		t.Fatalf("parse Set-Cookie %q: %v", sc[0], err)
	}
	return res, c, nil
}

func (p *browserPage) whoAmI(t *testing.T) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := p.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil {
		return "", err
	}
	return res.Msg.GetUserId(), nil
}

// TestCookieSession covers cookie sessions over real HTTP: Login sets an
// HttpOnly, SameSite=Strict cookie and returns no token; the cookie
// authenticates calls and streams from the server's own origin only; a
// missing or foreign Origin is refused (CSRF); Logout clears it; bearer
// tokens work as before.
func TestCookieSession(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	page := newBrowserPage(app.url)

	res, c, err := page.cookieLogin(t, "alice")
	if err != nil {
		t.Fatalf("cookie login from the server's origin: %v", err)
	}
	if res.Msg.GetToken() != "" {
		t.Errorf("Login with cookie returned token %q: scripts could read it", res.Msg.GetToken())
	}
	if res.Msg.GetUserId() != "alice" {
		t.Errorf("user id = %q", res.Msg.GetUserId())
	}
	// Plain http on loopback: no Secure, so no __Host- prefix.
	if c.Name != auth.CookieNameLoopback || !strings.HasPrefix(c.Value, "slc_") {
		t.Errorf("cookie = %s=%.8s…, want %s=slc_…", c.Name, c.Value, auth.CookieNameLoopback)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.Secure {
		t.Errorf("cookie attributes: HttpOnly=%v SameSite=%v Path=%q Domain=%q Secure=%v; want HttpOnly, Strict, /, no domain, not Secure on http", c.HttpOnly, c.SameSite, c.Path, c.Domain, c.Secure)
	}
	if want := 24 * time.Hour; c.MaxAge < int((want-time.Minute).Seconds()) || c.MaxAge > int(want.Seconds()) {
		t.Errorf("Max-Age = %d, want about %v (the session's absolute expiry)", c.MaxAge, want)
	}
	if exp := res.Msg.GetExpiresAt().AsTime(); c.Expires.Sub(exp).Abs() > time.Second {
		t.Errorf("cookie expires %v, session %v", c.Expires, exp)
	}
	page.cookie = c.Name + "=" + c.Value

	t.Run("same origin is accepted", func(t *testing.T) {
		if who, err := page.whoAmI(t); err != nil || who != "alice" {
			t.Fatalf("WhoAmI with the cookie = %q, %v; want alice", who, err)
		}
		// A stream too.
		ev := page.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
		ev.untilSynced(t)
		ev.cancel()
	})

	t.Run("missing or foreign Origin is refused", func(t *testing.T) {
		port := app.url[strings.LastIndex(app.url, ":")+1:]
		for _, origin := range []string{
			"",                         // no Origin: not provably from our page
			"null",                     // sandboxed frame, file: page
			"http://evil.example",      // another site
			"http://127.0.0.1:1",       // another port on the same host
			"http://localhost:" + port, // same port, another host name
			"https://evil.example",     // another site over https
			app.url + ".evil.example",  // a look-alike
			strings.Replace(app.url, "http", "ftp", 1), // not a web origin
		} {
			p := newBrowserPage(app.url)
			p.origin, p.cookie = origin, page.cookie
			if _, err := p.whoAmI(t); codeOf(err) != connect.CodePermissionDenied {
				t.Errorf("WhoAmI with the cookie from Origin %q = %v, want permission_denied", origin, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			stream, err := p.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}))
			if err == nil {
				for stream.Receive() {
					t.Errorf("stream from Origin %q delivered %v", origin, stream.Msg())
					break
				}
				err = stream.Err()
				stream.Close()
			}
			cancel()
			if codeOf(err) != connect.CodePermissionDenied {
				t.Errorf("Subscribe with the cookie from Origin %q = %v, want permission_denied", origin, err)
			}
			if _, _, err := p.cookieLogin(t, "bob"); codeOf(err) != connect.CodePermissionDenied {
				t.Errorf("cookie Login from Origin %q = %v, want permission_denied (login CSRF)", origin, err)
			}
		}
	})

	t.Run("bearer tokens still work, from anywhere", func(t *testing.T) {
		bob := login(t, app.url, "bob")
		if bob.token == "" || !strings.HasPrefix(bob.token, "slc_") {
			t.Fatalf("Login without cookie returned token %q", bob.token)
		}
		// A bearer token cannot be sent by a forged cross-site request, so
		// no Origin check applies; it also wins over a cookie.
		p := newBrowserPage(app.url)
		p.origin, p.cookie, p.token = "http://evil.example", page.cookie, bob.token
		if who, err := p.whoAmI(t); err != nil || who != "bob" {
			t.Fatalf("WhoAmI with bob's bearer token and alice's cookie = %q, %v; want bob", who, err)
		}
	})

	t.Run("an https page gets a Secure __Host- cookie", func(t *testing.T) {
		// As behind a proxy that terminates TLS: the request is plain, its
		// Origin https.
		p := newBrowserPage(app.url)
		p.origin = strings.Replace(app.url, "http://", "https://", 1)
		_, c, err := p.cookieLogin(t, "carol")
		if err != nil {
			t.Fatalf("cookie login from an https origin: %v", err)
		}
		if c.Name != auth.CookieName || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q; want %s, Secure, HttpOnly, Strict, /, no domain", c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain, auth.CookieName)
		}
		p.cookie = c.Name + "=" + c.Value
		if who, err := p.whoAmI(t); err != nil || who != "carol" {
			t.Fatalf("WhoAmI with the __Host- cookie = %q, %v", who, err)
		}
		// Over https only the __Host- cookie counts: a plain one (which a
		// sibling subdomain could plant) is ignored.
		p.cookie = auth.CookieNameLoopback + "=" + c.Value
		if _, err := p.whoAmI(t); codeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("WhoAmI with a plain cookie from an https page = %v, want unauthenticated", err)
		}
	})

	t.Run("logout clears the cookie and ends the session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ev := page.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
		ev.untilSynced(t)
		res, err := page.auth.Logout(ctx, connect.NewRequest(&authv1.LogoutRequest{}))
		if err != nil {
			t.Fatalf("Logout with the cookie: %v", err)
		}
		sc := res.Header().Values("Set-Cookie")
		if len(sc) != 1 {
			t.Fatalf("Logout Set-Cookie = %q, want one", sc)
		}
		c, err := http.ParseSetCookie(sc[0])
		if err != nil {
			t.Fatal(err)
		}
		if c.Name != auth.CookieNameLoopback || c.Value != "" || c.MaxAge >= 0 || !c.HttpOnly || c.Path != "/" {
			t.Errorf("Logout cookie = %q, want %s emptied with Max-Age=0", sc[0], auth.CookieNameLoopback)
		}
		if err := ev.end(t, 10*time.Second); codeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("stream after logout ended with %v, want unauthenticated", err)
		}
		// A copy of the old cookie is worth nothing now.
		if _, err := page.whoAmI(t); codeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("WhoAmI with the logged-out cookie = %v, want unauthenticated", err)
		}
	})
}
