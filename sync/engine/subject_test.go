package engine

import (
	"encoding/hex"
	"strings"
	"testing"
	"unicode"
)

func TestScopeToken(t *testing.T) {
	t.Parallel()
	safe := []string{"user/42", "channel/7", "global-color", "permissions/u_1", "org:a@b=c+d", "a~b", "A-Z_0-9"}
	for _, s := range safe {
		if got := scopeToken(s); got != s {
			t.Errorf("scopeToken(%q) = %q, want it unchanged", s, got)
		}
	}
	unsafe := []string{"", "a.b", "a*", ">", "user/42.x", "a b", "a\tb", "~abc", "~", "é", "a\x00", "*", ".."}
	for _, s := range unsafe {
		want := "~" + hex.EncodeToString([]byte(s))
		if got := scopeToken(s); got != want {
			t.Errorf("scopeToken(%q) = %q, want %q", s, got, want)
		}
	}
	// "~" followed by hex is what an encoded scope looks like; the raw scope
	// must not be mistaken for one.
	if scopeToken("~61") == scopeToken("a") {
		t.Error(`scopeToken("~61") collides with scopeToken("a")`)
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	if got := newSubjects("").change("user/1"); got != "sluice.chg.user/1" {
		t.Errorf("default prefix subject = %q", got)
	}
	if got := newSubjects("t1").change("a.b"); got != "t1.chg.~612e62" {
		t.Errorf("subject of an unsafe scope = %q", got)
	}
}

// validToken reports whether tok is one NATS subject token: non-empty, no
// separator, wildcard or whitespace.
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for _, r := range tok {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// FuzzScopeToken checks that scopeToken is injective and always yields one
// valid NATS subject token. Seeds are in testdata/fuzz/FuzzScopeToken.
func FuzzScopeToken(f *testing.F) {
	f.Add("user/1", "user/2")
	f.Add("a", "~61")
	f.Add("", "~")
	f.Add("a.b", "a*b")
	f.Fuzz(func(t *testing.T, a, b string) {
		ta, tb := scopeToken(a), scopeToken(b)
		if a != b && ta == tb {
			t.Fatalf("scopes %q and %q share token %q", a, b, ta)
		}
		for _, c := range []struct{ scope, tok string }{{a, ta}, {b, tb}} {
			if !validToken(c.tok) {
				t.Fatalf("scopeToken(%q) = %q, not a valid subject token", c.scope, c.tok)
			}
			// The token decodes back to the scope.
			if raw, ok := strings.CutPrefix(c.tok, "~"); ok {
				dec, err := hex.DecodeString(raw)
				if err != nil || string(dec) != c.scope {
					t.Fatalf("scopeToken(%q) = %q does not decode back", c.scope, c.tok)
				}
			} else if c.tok != c.scope {
				t.Fatalf("scopeToken(%q) = %q", c.scope, c.tok)
			}
		}
	})
}
