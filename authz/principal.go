package authz

import (
	"context"
	"slices"
	"time"
)

// Principal is the authenticated caller. It comes only from the session (the
// authentication interceptor); no request body ever names the caller.
type Principal struct {
	// ID is the user id, or ServiceID(name) ("service:<name>") for a
	// service principal: the two namespaces never overlap.
	ID string
	// Roles are the caller's global roles, e.g. "admin".
	Roles []string
	// Service is true for backend processes holding a service credential.
	Service bool
	// SessionID identifies the session the caller authenticated with.
	SessionID int64
	// ExpiresAt is when the session ends.
	ExpiresAt time.Time
	// ServerData is the user's serverData: trusted data for policies,
	// never sent to clients.
	ServerData map[string]any
	// ClientData is the user's clientData, returned to the client on login.
	ClientData map[string]any
}

// HasRole reports whether p holds role. A nil Principal holds none.
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of ctx, or nil for an anonymous call.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

type peerCertKey struct{}

// WithPeerCertName returns a context carrying the Common Name of the
// caller's verified TLS client certificate. Only the HTTP server sets it,
// after the TLS stack verified the chain against the configured client CA.
func WithPeerCertName(ctx context.Context, cn string) context.Context {
	return context.WithValue(ctx, peerCertKey{}, cn)
}

// PeerCertName returns the verified client certificate's Common Name, or "".
func PeerCertName(ctx context.Context) string {
	cn, _ := ctx.Value(peerCertKey{}).(string)
	return cn
}
