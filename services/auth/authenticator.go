package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/edge"
)

// Identity is who an authenticator says the caller is. ServerData is
// trusted data for policies and is never sent to clients; ClientData is
// returned to the client at login.
type Identity struct {
	ID         string
	Roles      []string
	ServerData map[string]any
	ClientData map[string]any
}

// LoginMeta describes a login attempt beyond its credentials.
type LoginMeta struct {
	// RemoteAddr is the client's IP address: the peer, or the address a
	// trusted proxy reported in X-Forwarded-For.
	RemoteAddr string
}

// PasswordAuthenticator checks a username and password (Login).
//
// Login returns ErrUnknownUser when the username is not its to judge (a
// Chain then asks the next authenticator), ErrRefused (possibly wrapped)
// when it definitively refuses, and an error matching ErrUnavailable when
// it cannot answer (a backend timeout or failure): that is never a login
// and never a refusal. Implementations must be safe for concurrent use and
// must never log the password.
type PasswordAuthenticator interface {
	Name() string
	Login(ctx context.Context, username, password string, meta LoginMeta) (Identity, error)
}

// TokenAuthenticator verifies a bearer token that is not a Sluice session
// token (a JWT). Verify returns the identity and when the token expires,
// ErrRefused (possibly wrapped) for a token it does not accept, or an error
// matching ErrUnavailable when it cannot decide. Implementations must be
// safe for concurrent use.
type TokenAuthenticator interface {
	Name() string
	Verify(ctx context.Context, token string) (Identity, time.Time, error)
}

// Errors of authenticators.
var (
	// ErrUnknownUser means "not mine": the username is unknown to this
	// authenticator, and a Chain tries the next one.
	ErrUnknownUser = errors.New("unknown user")
	// ErrRefused is a definitive no: wrong password, invalid token.
	ErrRefused = errors.New("credentials refused")
	// ErrUnavailable means the authentication backend could not answer
	// (timeout, connection error, 5xx, malformed reply). Errors matching it
	// also carry an edge.UnavailableError with a fixed message, which the
	// edge shows the client as unavailable (and a *connect.Error with that
	// code, for callers outside the edge).
	ErrUnavailable = errors.New("authentication backend unavailable")
)

// unavailable returns an error matching ErrUnavailable that the edge maps
// to Connect's unavailable without showing cause to the client. The caller
// logs cause; it is kept for errors.Is and the server's logs only.
func unavailable(cause error) error {
	return &unavailableError{
		connect: connect.NewError(connect.CodeUnavailable, ErrUnavailable),
		edge:    edge.Unavailable(ErrUnavailable.Error()),
		cause:   cause,
	}
}

type unavailableError struct {
	connect *connect.Error
	edge    error
	cause   error
}

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return ErrUnavailable.Error()
	}
	return "authentication backend unavailable: " + e.cause.Error()
}

func (e *unavailableError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.edge, e.connect}
	}
	return []error{e.edge, e.connect, e.cause}
}

// Chain is a PasswordAuthenticator that asks its authenticators in order:
// the first answer other than ErrUnknownUser wins, so a refusal or an
// unavailable backend stops the chain (a later, less authoritative
// authenticator never overrides an earlier one). It is safe for concurrent
// use if its authenticators are.
type Chain struct {
	auths []PasswordAuthenticator
}

var _ PasswordAuthenticator = (*Chain)(nil)

// NewChain returns the chain of auths, asked in order.
func NewChain(auths ...PasswordAuthenticator) *Chain {
	return &Chain{auths: slices.Clone(auths)}
}

// Name implements PasswordAuthenticator.
func (c *Chain) Name() string { return "chain" }

// Login implements PasswordAuthenticator. It returns ErrUnknownUser if
// every authenticator does (or there are none).
func (c *Chain) Login(ctx context.Context, username, password string, meta LoginMeta) (Identity, error) {
	for _, a := range c.auths {
		id, err := a.Login(ctx, username, password, meta)
		if errors.Is(err, ErrUnknownUser) {
			continue
		}
		if err != nil {
			return Identity{}, fmt.Errorf("%s: %w", a.Name(), err)
		}
		if err := checkIdentity(id); err != nil {
			return Identity{}, fmt.Errorf("%s: %w", a.Name(), err)
		}
		return id, nil
	}
	return Identity{}, ErrUnknownUser
}

// checkIdentity refuses identities a session cannot hold, among them a
// user id in the service namespace ("service:…"): a user must never act
// as, or own what was created by, a service principal.
func checkIdentity(id Identity) error {
	if id.ID == "" || len(id.ID) > 256 || !utf8.ValidString(id.ID) {
		return fmt.Errorf("authenticator returned an invalid user id %q", id.ID)
	}
	if authz.IsServiceID(id.ID) {
		return fmt.Errorf("authenticator returned user id %q, which is reserved for service principals", id.ID)
	}
	return nil
}

// normalizeRoles returns roles sorted, without duplicates or empty ones.
func normalizeRoles(roles []string) []string {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if r != "" {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// None is the development authenticator: every Login succeeds, whatever
// the password, as Identity{ID: username, Roles: ["anonymous"]}. Anyone
// can therefore act as any user id; never use it where others can connect.
type None struct{}

var _ PasswordAuthenticator = None{}

// Name implements PasswordAuthenticator.
func (None) Name() string { return "none" }

// Login implements PasswordAuthenticator.
func (None) Login(_ context.Context, username, _ string, _ LoginMeta) (Identity, error) {
	return Identity{ID: username, Roles: []string{"anonymous"}, ServerData: map[string]any{}, ClientData: map[string]any{}}, nil
}
