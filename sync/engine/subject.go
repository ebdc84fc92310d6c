package engine

import (
	"context"
	"encoding/hex"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultPrefix is the NATS subject prefix used when none is configured.
const DefaultPrefix = "sluice"

// subjects builds the NATS subjects of one deployment. Instances that share
// a prefix share changes; tests use a prefix of their own.
type subjects struct {
	prefix string
}

func newSubjects(prefix string) subjects {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return subjects{prefix: prefix}
}

// change returns the subject that carries the changes of scope.
func (s subjects) change(scope string) string {
	return s.prefix + ".chg." + scopeToken(scope)
}

// scopeToken encodes a scope as one NATS subject token. Scopes made only of
// safe characters are used as they are, for readable subjects; any other
// scope is hex-encoded behind "~", which no safe token starts with, so two
// scopes never share a token.
func scopeToken(scope string) string {
	if scope != "" && !strings.HasPrefix(scope, "~") && safeToken(scope) {
		return scope
	}
	return "~" + hex.EncodeToString([]byte(scope))
}

func safeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '/' || c == ':' || c == '@' || c == '=' || c == '+' || c == '~':
		default:
			return false
		}
	}
	return true
}

// flush waits until the NATS server has processed everything sent on nc so
// far. nats.go requires a deadline; ctx's is used when it has one, else d.
func flush(ctx context.Context, nc *nats.Conn, d time.Duration) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	return nc.FlushWithContext(ctx)
}
