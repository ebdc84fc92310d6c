package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// tokenPrefix marks Sluice session tokens, so that leaked tokens are easy
// to recognise in logs and secret scanners.
const tokenPrefix = "slc_"

// newToken returns a fresh opaque session token (256 random bits).
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// hashToken is what the server stores. Tokens carry 256 random bits, so a
// fast hash is enough: there is nothing to brute-force.
func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// maxSessionToken bounds a session token (they are 47 bytes).
const maxSessionToken = 512

// bearer extracts a session-sized token of an `Authorization: Bearer
// <token>` header.
func bearer(header string) (string, bool) { return bearerToken(header, maxSessionToken) }

// bearerToken extracts the token of an `Authorization: Bearer <token>`
// header if it is at most max bytes.
func bearerToken(header string, max int) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || len(token) > max {
		return "", false
	}
	return token, true
}
