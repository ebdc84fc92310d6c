package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// ServiceIDPrefix starts the principal id of every service principal: the
// service "billing" acts as "service:billing". Users live in another
// namespace: no authenticator may return a user id of this form (see
// IsServiceID), so a user named like a service never owns, nor acts as,
// what the service created.
const ServiceIDPrefix = "service:"

// ServiceID returns the principal id of the service name.
func ServiceID(name string) string { return ServiceIDPrefix + name }

// IsServiceID reports whether id is in the service namespace. The prefix
// is compared without regard to case, so that no user id can even look
// like a service's ("Service:billing").
func IsServiceID(id string) bool {
	return len(id) >= len(ServiceIDPrefix) && strings.EqualFold(id[:len(ServiceIDPrefix)], ServiceIDPrefix)
}

// ServiceTokenPrefix marks service credentials, so they are told apart
// from session tokens and JWTs and are easy to spot by secret scanners.
const ServiceTokenPrefix = "sks_"

// ServiceCredential is one backend process allowed to act as a service
// principal: by bearer token (only its SHA-256 is configured) and/or by a
// TLS client certificate whose Common Name is Name.
type ServiceCredential struct {
	Name string
	// TokenHash is "sha256:<hex>" of the full token, or empty for
	// certificate-only services.
	TokenHash string
}

// ServiceCredentials verifies service credentials. Immutable and safe for
// concurrent use.
type ServiceCredentials struct {
	byHash map[[32]byte]string
	names  map[string]bool
}

// NewServiceCredentials checks and indexes the configured credentials.
func NewServiceCredentials(creds []ServiceCredential) (*ServiceCredentials, error) {
	sc := &ServiceCredentials{byHash: map[[32]byte]string{}, names: map[string]bool{}}
	for i, c := range creds {
		if c.Name == "" || strings.ContainsAny(c.Name, " /\t\r\n") || IsServiceID(c.Name) {
			return nil, fmt.Errorf("services[%d].name: %q is not a valid service name", i, c.Name)
		}
		if sc.names[c.Name] {
			return nil, fmt.Errorf("services[%d].name: %q appears twice", i, c.Name)
		}
		sc.names[c.Name] = true
		if c.TokenHash == "" {
			continue
		}
		hexed, ok := strings.CutPrefix(c.TokenHash, "sha256:")
		raw, err := hex.DecodeString(hexed)
		if !ok || err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("services[%d].secret_hash: want sha256:<64 hex digits> (see `sluiced service-credential`)", i)
		}
		sc.byHash[[32]byte(raw)] = c.Name
	}
	return sc, nil
}

// NewServiceToken returns a fresh service token and the hash to configure.
func NewServiceToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", err
	}
	token = ServiceTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, "sha256:" + hex.EncodeToString(sum[:]), nil
}

// IsServiceToken reports whether token has the service credential form.
func IsServiceToken(token string) bool { return strings.HasPrefix(token, ServiceTokenPrefix) }

// ByToken returns the service principal of a service token; its ID is
// ServiceID(name).
func (sc *ServiceCredentials) ByToken(token string) (*Principal, bool) {
	if sc == nil {
		return nil, false
	}
	// The lookup compares SHA-256 digests, not the secret: timing can at
	// most reveal digest prefixes, which do not help find a 256-bit token.
	name, ok := sc.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return nil, false
	}
	return servicePrincipal(name), true
}

// servicePrincipal returns the principal of the service name.
func servicePrincipal(name string) *Principal {
	return &Principal{ID: ServiceID(name), Service: true, Roles: []string{"service"}}
}

// ByCertName returns the service principal for a verified TLS client
// certificate's Common Name; its ID is ServiceID(cn).
func (sc *ServiceCredentials) ByCertName(cn string) (*Principal, bool) {
	if sc == nil || !sc.names[cn] {
		return nil, false
	}
	return servicePrincipal(cn), true
}
