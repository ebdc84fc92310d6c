package edge

import (
	"encoding/base64"
	"strings"
)

// Page sizes of list RPCs.
const (
	DefaultPageSize = 100
	MaxPageSize     = 500
)

// pageTokenPrefix marks tokens this server made.
const pageTokenPrefix = "k:"

// PageToken returns the opaque token of the page after the record key
// last.
func PageToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + last))
}

// ParsePageToken returns the key a page token continues after ("" for an
// empty token), or an invalid_argument error on field for a token this
// server did not make.
func ParsePageToken(field, token string) (string, error) {
	if token == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || !strings.HasPrefix(string(b), pageTokenPrefix) {
		return "", Invalid(field, "is not a page token this server gave")
	}
	return strings.TrimPrefix(string(b), pageTokenPrefix), nil
}

// PageSize returns the page size a request asked for: DefaultPageSize for
// 0, else n (validated by the caller to 1..MaxPageSize).
func PageSize(n int32) int {
	if n == 0 {
		return DefaultPageSize
	}
	return int(n)
}
