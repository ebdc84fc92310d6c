// Package auth is the AuthService and the authentication of every call:
// the authenticators (users file, HTTP webhook, JWT, none) and their
// chain, password hashing, login throttling, sessions and the bearer-token
// interceptor. docs/SECURITY.md describes the model.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/authz"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/services/edge"
)

// Service implements sluice.auth.v1.AuthService.
type Service struct {
	login    PasswordAuthenticator
	sessions *Sessions
	policies *authz.Table
	valid    *edge.Validator
	throttle *throttle
	proxies  []netip.Prefix
}

var _ authv1connect.AuthServiceHandler = (*Service)(nil)

// ServiceConfig configures the AuthService. The zero value of each field
// is its documented default.
type ServiceConfig struct {
	// Throttle bounds login attempts. Default: see ThrottleConfig.
	Throttle ThrottleConfig
	// TrustedProxies are the peers whose X-Forwarded-For header names the
	// client address (for throttling and the webhook's remoteAddr).
	// Default none: the peer address is the client address.
	TrustedProxies []netip.Prefix
}

// NewService returns the AuthService. Login asks login (usually a Chain);
// sessions are opened in sessions.
func NewService(login PasswordAuthenticator, sessions *Sessions, policies *authz.Table, valid *edge.Validator, cfg ServiceConfig) *Service {
	return &Service{
		login:    login,
		sessions: sessions,
		policies: policies,
		valid:    valid,
		throttle: newThrottle(cfg.Throttle),
		proxies:  slices.Clone(cfg.TrustedProxies),
	}
}

// Policies returns the policy of every AuthService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: authv1connect.AuthServiceLoginProcedure, Action: "auth.login", Public: true,
			Description: "anyone with a username and password the authenticator chain accepts (throttled)"},
		{Procedure: authv1connect.AuthServiceLogoutProcedure, Action: "auth.logout",
			Description: "any authenticated principal, for its own session"},
		{Procedure: authv1connect.AuthServiceWhoAmIProcedure, Action: "auth.whoami",
			Description: "any authenticated principal, about itself"},
	}
}

type loginCmd struct {
	Username string `field:"username" validate:"required,maxbytes=128,utf8,nocontrol,userid"`
	Password string `field:"password" validate:"required,maxbytes=1024"`
}

// Login checks the credentials with the authenticator chain and opens a
// session. A wrong username and a wrong password are the same
// unauthenticated error. Attempts are throttled per username and address,
// per address and per username before the password is checked (see
// ThrottleConfig), so a throttled caller
// gets resource_exhausted whether or not the password is right; a
// successful login does not count against the limits. An authentication
// backend that cannot answer is unavailable. With cookie set, the token
// goes into an HttpOnly session cookie instead of the response (cookie.go),
// for a same-origin browser request only (else permission_denied).
func (s *Service) Login(ctx context.Context, req *connect.Request[authv1.LoginRequest]) (*connect.Response[authv1.LoginResponse], error) {
	cmd := loginCmd{Username: req.Msg.GetUsername(), Password: req.Msg.GetPassword()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, authv1connect.AuthServiceLoginProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	// A cookie session is for this server's own pages only: refused
	// before the password is looked at, so a forged cross-origin login
	// (login CSRF) learns nothing and plants nothing.
	wantCookie := req.Msg.GetCookie()
	page := browserFrom(ctx)
	if wantCookie && !page.sameOrigin {
		return nil, errCrossOrigin
	}
	addr := clientAddr(req.Peer().Addr, req.Header(), s.proxies)
	charged, ok := s.throttle.take(cmd.Username, addr)
	if !ok {
		return nil, edge.ErrRateLimited
	}
	id, err := s.login.Login(ctx, cmd.Username, cmd.Password, LoginMeta{RemoteAddr: addr})
	switch {
	case errors.Is(err, ErrUnknownUser), errors.Is(err, ErrRefused):
		return nil, authz.ErrUnauthenticated
	case err != nil:
		// Not the caller's fault (backend unavailable): no charge.
		s.throttle.refund(charged)
		return nil, err
	}
	s.throttle.succeeded(charged)
	if err := checkIdentity(id); err != nil {
		return nil, err
	}
	token, expires, err := s.sessions.Create(ctx, id)
	if err != nil {
		return nil, err
	}
	cd, err := structpb.NewStruct(orEmpty(id.ClientData))
	if err != nil {
		return nil, fmt.Errorf("client data: %w", err)
	}
	res := connect.NewResponse(&authv1.LoginResponse{
		Token:      token,
		UserId:     id.ID,
		ClientData: cd,
		ExpiresAt:  timestamppb.New(expires),
	})
	if wantCookie {
		res.Msg.Token = "" // in the HttpOnly cookie only: out of scripts' reach
		res.Header().Add("Set-Cookie", sessionCookie(token, expires, page.secure).String())
	}
	return res, nil
}

// Logout revokes the caller's session; its streams on this instance end at
// once, elsewhere within the session check interval. A request carrying
// the session cookie gets it cleared.
func (s *Service) Logout(ctx context.Context, _ *connect.Request[authv1.LogoutRequest]) (*connect.Response[authv1.LogoutResponse], error) {
	if err := s.policies.Authorize(ctx, authv1connect.AuthServiceLogoutProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	p := authz.PrincipalFrom(ctx)
	if p.SessionID == 0 {
		return nil, errNoSession()
	}
	if err := s.sessions.Revoke(ctx, p.SessionID); err != nil {
		return nil, err
	}
	res := connect.NewResponse(&authv1.LogoutResponse{})
	if page := browserFrom(ctx); page.hasCookie {
		res.Header().Add("Set-Cookie", clearCookie(page.secure).String())
	}
	return res, nil
}

// WhoAmI describes the caller.
func (s *Service) WhoAmI(ctx context.Context, _ *connect.Request[authv1.WhoAmIRequest]) (*connect.Response[authv1.WhoAmIResponse], error) {
	if err := s.policies.Authorize(ctx, authv1connect.AuthServiceWhoAmIProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	p := authz.PrincipalFrom(ctx)
	cd, err := structpb.NewStruct(p.ClientData)
	if err != nil {
		return nil, fmt.Errorf("client data: %w", err)
	}
	return connect.NewResponse(&authv1.WhoAmIResponse{
		UserId:           p.ID,
		Roles:            p.Roles,
		ClientData:       cd,
		SessionExpiresAt: timestamppb.New(p.ExpiresAt),
	}), nil
}
