package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
)

// Interceptor authenticates every call from its bearer token (or, from
// this server's own pages, its session cookie: cookie.go) and admits it
// by the procedure's policy (default deny; a non-public procedure needs a
// principal). The token is a Sluice session token ("slc_…") or, if a
// TokenAuthenticator is configured, a JWT: its principal has no session
// (SessionID 0) and ends at the token's exp. A request body never names
// the caller: handlers read the principal from the context only.
type Interceptor struct {
	sessions *Sessions
	policies *authz.Table
	tokens   TokenAuthenticator
	services *authz.ServiceCredentials
}

// NewInterceptor returns the authentication interceptor. tokens may be nil:
// then only session tokens are accepted. services (may be nil) are the
// service credentials: a bearer token "sks_…" or a verified TLS client
// certificate whose Common Name is a configured service makes the caller a
// service principal.
func NewInterceptor(sessions *Sessions, policies *authz.Table, tokens TokenAuthenticator, services *authz.ServiceCredentials) *Interceptor {
	return &Interceptor{sessions: sessions, policies: policies, tokens: tokens, services: services}
}

func (i *Interceptor) authenticate(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	pol, _ := i.policies.Lookup(procedure)
	if cn := authz.PeerCertName(ctx); cn != "" && h.Get("Authorization") == "" {
		// Mutual TLS: the certificate was verified against the client CA.
		if p, ok := i.services.ByCertName(cn); ok {
			return authz.WithPrincipal(ctx, p), i.policies.Admit(authz.WithPrincipal(ctx, p), procedure)
		}
	}
	raw, err := credential(ctx, h)
	if err != nil && !pol.Public {
		return ctx, err
	}
	if raw != "" {
		token, ok := bearerToken(raw, maxJWTBytes)
		if !ok && !pol.Public {
			return ctx, authz.ErrUnauthenticated
		}
		if ok {
			p, err := i.principal(ctx, token)
			switch {
			case err == nil:
				ctx = authz.WithPrincipal(ctx, p)
			case pol.Public && errors.Is(err, authz.ErrUnauthenticated):
				// A stale token does not stop a public call such as Login.
			default:
				return ctx, err
			}
		}
	}
	return ctx, i.policies.Admit(ctx, procedure)
}

// credential returns the call's Authorization header or, without one,
// what its session cookie stands for (cookie.go); a cookie from another
// origin is an error.
func credential(ctx context.Context, h http.Header) (string, error) {
	if raw := h.Get("Authorization"); raw != "" {
		return raw, nil
	}
	return cookieCredential(ctx)
}

// principal resolves a bearer token: a session token, else a JWT if JWTs
// are accepted. Anything refused is authz.ErrUnauthenticated; an
// unavailable token backend stays unavailable.
func (i *Interceptor) principal(ctx context.Context, token string) (*authz.Principal, error) {
	if authz.IsServiceToken(token) {
		if p, ok := i.services.ByToken(token); ok {
			return p, nil
		}
		return nil, authz.ErrUnauthenticated
	}
	if i.tokens == nil || strings.HasPrefix(token, tokenPrefix) || !looksLikeJWT(token) {
		if len(token) > maxSessionToken {
			return nil, authz.ErrUnauthenticated
		}
		return i.sessions.Principal(ctx, token)
	}
	id, exp, err := i.tokens.Verify(ctx, token)
	if errors.Is(err, ErrRefused) || errors.Is(err, ErrUnknownUser) {
		return nil, authz.ErrUnauthenticated
	}
	if err != nil {
		return nil, err
	}
	return &authz.Principal{
		ID:         id.ID,
		Roles:      normalizeRoles(id.Roles),
		ExpiresAt:  exp,
		ServerData: orEmpty(id.ServerData),
		ClientData: orEmpty(id.ClientData),
	}, nil
}

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
