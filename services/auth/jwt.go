package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWT signature algorithms Sluice accepts. Symmetric (HS*) algorithms and
// "none" are never accepted: a verifier holding an HMAC secret could mint
// tokens, and "none" is no signature at all.
const (
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
)

// JWTConfig configures NewJWTAuthenticator. The zero value of each field is
// its documented default; Issuer, Audience and at least one key source are
// required.
type JWTConfig struct {
	// Issuer must equal the token's "iss". Required.
	Issuer string
	// Audience: the token's "aud" must contain one of these. Required.
	Audience []string
	// JWKSURL is fetched for keys: when Run starts and every
	// RefreshInterval while it runs, and when a token names an unknown
	// "kid" or no fetch has succeeded yet (at most once per
	// MinRefetchInterval).
	JWKSURL string
	// Keys are static verification keys (see ParsePublicKeys); they match
	// tokens with any "kid".
	Keys []crypto.PublicKey
	// JWKS is a static JWK set (JSON); its keys match by "kid".
	JWKS []byte
	// Algorithms restricts the accepted algorithms to a subset of RS256,
	// ES256 and EdDSA. Default: all three.
	Algorithms []string
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// IDClaim names the claim holding the user id. Default "sub".
	IDClaim string
	// RolesClaim names the claim holding the roles: an array of strings or
	// a space-separated string. Default "roles".
	RolesClaim string
	// ServerDataClaims are copied into the principal's serverData (trusted,
	// never sent to clients), ClientDataClaims into its clientData. A name
	// is a claim, or a dotted path into nested claims
	// ("realm_access.roles") when no claim has that exact name.
	ServerDataClaims []string
	ClientDataClaims []string
	// RefreshInterval is how often the JWKS is refetched. Default 15m.
	RefreshInterval time.Duration
	// MinRefetchInterval bounds refetches for unknown key ids (and retries
	// after a failed fetch). Default 1m.
	MinRefetchInterval time.Duration
	// FetchTimeout bounds one JWKS fetch. Default 5s.
	FetchTimeout time.Duration
	// Client fetches the JWKS. Default: a plain http.Client.
	Client *http.Client
	// Logger receives fetch failures. Nil discards them.
	Logger *slog.Logger
}

// maxJWKSBytes bounds a fetched JWK set; maxJWTBytes a bearer JWT.
const (
	maxJWKSBytes = 1 << 20
	maxJWTBytes  = 8 << 10
	// maxKeyTries bounds the keys tried for one token without a known kid.
	maxKeyTries = 8
)

// JWTAuthenticator is the `jwt` authenticator: it verifies bearer JWTs
// signed with RS256, ES256 or EdDSA against a JWKS URL and/or static keys,
// and checks issuer, audience, exp (required), nbf and iat with a small
// leeway. It is safe for concurrent use. With a JWKS URL, the caller runs
// Run for the periodic refresh of the keys, under its own lifecycle.
type JWTAuthenticator struct {
	cfg    JWTConfig
	algs   []jose.SignatureAlgorithm
	static []verifyKey
	log    *slog.Logger

	fetchMu sync.Mutex // one JWKS fetch at a time

	mu          sync.Mutex
	remote      []verifyKey
	fetched     bool // a fetch has succeeded
	lastAttempt time.Time
	lastErr     error
}

var _ TokenAuthenticator = (*JWTAuthenticator)(nil)

// verifyKey is one public key a token may be verified with.
type verifyKey struct {
	kid string
	alg string // "" means any algorithm the key's type allows
	key crypto.PublicKey
}

// NewJWTAuthenticator returns the JWT authenticator of cfg. It starts
// nothing: with a JWKS URL, keys are fetched by Run and on demand by
// Verify; a failing JWKS is logged and retried, and tokens whose key is
// not known yet are unavailable, not refused, until a fetch succeeds.
func NewJWTAuthenticator(cfg JWTConfig) (*JWTAuthenticator, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("jwt authenticator: issuer is required")
	}
	if len(cfg.Audience) == 0 || slices.Contains(cfg.Audience, "") {
		return nil, errors.New("jwt authenticator: audience is required")
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("jwt authenticator: jwks url must be an absolute http(s) URL")
		}
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{AlgRS256, AlgES256, AlgEdDSA}
	}
	a := &JWTAuthenticator{cfg: cfg, log: cfg.Logger}
	for _, alg := range cfg.Algorithms {
		switch alg {
		case AlgRS256, AlgES256, AlgEdDSA:
			a.algs = append(a.algs, jose.SignatureAlgorithm(alg))
		default:
			return nil, fmt.Errorf("jwt authenticator: algorithm %q not accepted (RS256, ES256, EdDSA)", alg)
		}
	}
	for i, k := range cfg.Keys {
		if keyAlgs(k) == nil {
			return nil, fmt.Errorf("jwt authenticator: key %d: unsupported key type %T (RSA >= 2048 bits, EC P-256, Ed25519)", i, k)
		}
		a.static = append(a.static, verifyKey{key: k})
	}
	if len(cfg.JWKS) > 0 {
		keys, err := parseJWKS(cfg.JWKS)
		if err != nil {
			return nil, fmt.Errorf("jwt authenticator: jwks: %w", err)
		}
		a.static = append(a.static, keys...)
	}
	if len(a.static) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("jwt authenticator: no keys: set a jwks url, key files or an inline jwks")
	}
	if a.cfg.Leeway <= 0 {
		a.cfg.Leeway = 30 * time.Second
	}
	if a.cfg.IDClaim == "" {
		a.cfg.IDClaim = "sub"
	}
	if a.cfg.RolesClaim == "" {
		a.cfg.RolesClaim = "roles"
	}
	if a.cfg.RefreshInterval <= 0 {
		a.cfg.RefreshInterval = 15 * time.Minute
	}
	if a.cfg.MinRefetchInterval <= 0 {
		a.cfg.MinRefetchInterval = time.Minute
	}
	if a.cfg.FetchTimeout <= 0 {
		a.cfg.FetchTimeout = 5 * time.Second
	}
	if a.cfg.Client == nil {
		a.cfg.Client = &http.Client{}
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	return a, nil
}

// Name implements TokenAuthenticator: "jwt".
func (a *JWTAuthenticator) Name() string { return "jwt" }

// Run fetches the JWKS at once and then every RefreshInterval, until ctx
// is cancelled; then it returns nil (a fetch in flight is cancelled). A
// failed fetch is logged and the previous keys stay in force. Without a
// JWKS URL there is nothing to refresh and Run returns nil at once. Start
// at most one Run per authenticator.
func (a *JWTAuthenticator) Run(ctx context.Context) error {
	if a.cfg.JWKSURL == "" {
		return nil
	}
	tick := time.NewTicker(a.cfg.RefreshInterval)
	defer tick.Stop()
	for {
		// Not forced: a fetch a Verify just made counts.
		_ = a.refetch(ctx, false)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// refetch fetches the JWKS unless another fetch finished while this one
// waited or, unless force, one was attempted within MinRefetchInterval. It
// returns an error matching ErrUnavailable if the keys could not be
// brought up to date. ctx bounds the fetch (with FetchTimeout).
func (a *JWTAuthenticator) refetch(ctx context.Context, force bool) error {
	start := time.Now()
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	a.mu.Lock()
	recent := a.lastAttempt.After(start) || (!force && time.Since(a.lastAttempt) < a.cfg.MinRefetchInterval)
	lastErr := a.lastErr
	a.mu.Unlock()
	if recent {
		if lastErr != nil {
			return unavailable(lastErr)
		}
		return nil
	}
	keys, err := a.fetch(ctx)
	if err != nil && ctx.Err() != nil {
		// Cancelled (Run ending): not the JWKS's failure, record nothing.
		return unavailable(err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lastAttempt = time.Now()
	a.lastErr = err
	if err != nil {
		a.log.Warn("jwt authenticator: jwks fetch failed; keeping the previous keys", "url", redactURL(a.cfg.JWKSURL), "err", err)
		return unavailable(err)
	}
	a.remote, a.fetched = keys, true
	return nil
}

func (a *JWTAuthenticator) fetch(ctx context.Context) ([]verifyKey, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := a.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(data)
}

// parseJWKS returns the usable signature verification keys of a JWK set.
// Keys Sluice cannot use (encryption keys, symmetric keys, other types or
// curves, weak RSA) are skipped; a set without any usable key is an error.
func parseJWKS(data []byte) ([]verifyKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	var keys []verifyKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			continue // an unsupported key type must not hide the others
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			k = k.Public() // a private key published by mistake; nil Key for symmetric
		}
		if k.Key == nil || keyAlgs(k.Key) == nil {
			continue
		}
		if k.Algorithm != "" && !slices.Contains(keyAlgs(k.Key), k.Algorithm) {
			continue
		}
		keys = append(keys, verifyKey{kid: k.KeyID, alg: k.Algorithm, key: k.Key})
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks has no usable signature key (RSA >= 2048 bits, EC P-256, Ed25519)")
	}
	return keys, nil
}

// keyAlgs returns the algorithms key may verify, or nil for a key Sluice
// does not accept.
func keyAlgs(key crypto.PublicKey) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return []string{AlgRS256}
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return []string{AlgES256}
		}
	case ed25519.PublicKey:
		return []string{AlgEdDSA}
	}
	return nil
}

// ParsePublicKeys returns the public keys in PEM data: PUBLIC KEY (PKIX)
// blocks, RSA PUBLIC KEY (PKCS #1) blocks and CERTIFICATE blocks (their
// subject key). Other blocks are an error, so that a private key is not
// deployed by mistake where a public one is expected.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var key crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("pem block %q is not a public key or certificate", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("pem block %q: %w", block.Type, err)
		}
		if keyAlgs(key) == nil {
			return nil, fmt.Errorf("unsupported key type %T (RSA >= 2048 bits, EC P-256, Ed25519)", key)
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}

// looksLikeJWT reports whether token has the shape of a compact JWS: three
// non-empty base64url parts.
func looksLikeJWT(token string) bool {
	if len(token) > maxJWTBytes || strings.Count(token, ".") != 2 {
		return false
	}
	for _, part := range strings.Split(token, ".") {
		if part == "" {
			return false
		}
		for _, c := range part {
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Verify implements TokenAuthenticator. Every invalid token (malformed,
// other algorithm, unknown key, bad signature, wrong issuer or audience,
// expired, not yet valid, no exp, no id) is ErrRefused; a token whose key
// cannot be looked up because the JWKS is unreachable is unavailable.
func (a *JWTAuthenticator) Verify(ctx context.Context, token string) (Identity, time.Time, error) {
	if len(token) > maxJWTBytes {
		return Identity{}, time.Time{}, fmt.Errorf("%w: token too large", ErrRefused)
	}
	tok, err := jwt.ParseSigned(token, a.algs)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if len(tok.Headers) != 1 {
		return Identity{}, time.Time{}, fmt.Errorf("%w: not exactly one signature", ErrRefused)
	}
	h := tok.Headers[0]
	keys, err := a.keysFor(ctx, h.KeyID, h.Algorithm)
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	var std jwt.Claims
	var raw map[string]any
	verified := false
	for i, k := range keys {
		if i == maxKeyTries {
			break
		}
		if tok.Claims(k.key, &std, &raw) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Identity{}, time.Time{}, fmt.Errorf("%w: no key verifies the signature", ErrRefused)
	}
	if std.Expiry == nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: no exp claim", ErrRefused)
	}
	expected := jwt.Expected{Issuer: a.cfg.Issuer, AnyAudience: a.cfg.Audience, Time: time.Now()}
	if err := std.ValidateWithLeeway(expected, a.cfg.Leeway); err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	id, err := a.identity(raw)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return id, clampTime(std.Expiry.Time()), nil
}

// maxTime is the latest instant a google.protobuf.Timestamp can hold
// (9999-12-31T23:59:59Z); a later exp would make every response that
// carries the principal's expiry unencodable as JSON.
var maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// clampTime returns t, or maxTime if t is later.
func clampTime(t time.Time) time.Time {
	if t.After(maxTime) {
		return maxTime
	}
	return t
}

// keysFor returns the keys a token with kid and alg may be verified with,
// refetching the JWKS first when kid is not known. The fetch is shared by
// every caller waiting for it, so one caller's cancellation must not fail
// it: it runs without ctx's cancellation, bounded by FetchTimeout.
func (a *JWTAuthenticator) keysFor(ctx context.Context, kid, alg string) ([]verifyKey, error) {
	ctx = context.WithoutCancel(ctx)
	exact, rest := a.match(kid, alg)
	if kid != "" && len(exact) == 0 && a.cfg.JWKSURL != "" {
		if err := a.refetch(ctx, false); err != nil {
			return nil, err
		}
		exact, rest = a.match(kid, alg)
	} else if len(exact)+len(rest) == 0 && a.cfg.JWKSURL != "" {
		a.mu.Lock()
		fetched, lastErr := a.fetched, a.lastErr
		a.mu.Unlock()
		if !fetched {
			if err := a.refetch(ctx, false); err != nil {
				return nil, err
			}
			exact, rest = a.match(kid, alg)
		} else if lastErr != nil {
			return nil, unavailable(lastErr)
		}
	}
	if len(exact)+len(rest) == 0 {
		return nil, fmt.Errorf("%w: no key for kid %q and alg %s", ErrRefused, kid, alg)
	}
	return append(exact, rest...), nil
}

// match returns the keys usable with alg whose kid equals kid (exact), and
// those without a kid (rest). A token without a kid matches every key.
func (a *JWTAuthenticator) match(kid, alg string) (exact, rest []verifyKey) {
	a.mu.Lock()
	all := append(slices.Clip(a.static), a.remote...)
	a.mu.Unlock()
	for _, k := range all {
		if (k.alg != "" && k.alg != alg) || !slices.Contains(keyAlgs(k.key), alg) {
			continue
		}
		switch {
		case kid == "" || k.kid == "":
			rest = append(rest, k)
		case k.kid == kid:
			exact = append(exact, k)
		}
	}
	return exact, rest
}

// identity maps verified claims to an Identity.
func (a *JWTAuthenticator) identity(claims map[string]any) (Identity, error) {
	id := Identity{ServerData: map[string]any{}, ClientData: map[string]any{}}
	switch v := claimAt(claims, a.cfg.IDClaim).(type) {
	case string:
		id.ID = v
	case float64:
		id.ID = strconv.FormatFloat(v, 'f', -1, 64)
	}
	if err := checkIdentity(id); err != nil {
		return Identity{}, fmt.Errorf("claim %q: %w", a.cfg.IDClaim, err)
	}
	switch v := claimAt(claims, a.cfg.RolesClaim).(type) {
	case string:
		id.Roles = normalizeRoles(strings.Fields(v))
	case []any:
		for _, r := range v {
			if s, ok := r.(string); ok {
				id.Roles = append(id.Roles, s)
			}
		}
		id.Roles = normalizeRoles(id.Roles)
	}
	for _, name := range a.cfg.ServerDataClaims {
		if v := claimAt(claims, name); v != nil {
			id.ServerData[name] = v
		}
	}
	for _, name := range a.cfg.ClientDataClaims {
		if v := claimAt(claims, name); v != nil {
			id.ClientData[name] = v
		}
	}
	return id, nil
}

// claimAt returns the claim name, or the value at a dotted path into
// nested claims when no claim has that exact name; nil if absent.
func claimAt(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = claims
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[part]; !ok {
			return nil
		}
	}
	return cur
}
