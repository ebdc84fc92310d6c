package auth

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestBearer(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("t", 512)
	tests := []struct {
		header string
		token  string // "" means rejected
	}{
		{"Bearer slc_abc", "slc_abc"},
		{"bearer slc_abc", "slc_abc"},
		{"BEARER slc_abc", "slc_abc"},
		{"Bearer  slc_abc ", "slc_abc"},
		{"Bearer " + long, long},
		{"Bearer " + long + "t", ""},
		{"Basic dXNlcjpwYXNz", ""},
		{"Bearer", ""},
		{"Bearer ", ""},
		{"Bearer \t ", ""},
		{"", ""},
		{" Bearer x", ""},
		{"Bearerx y", ""},
		{"Token x", ""},
		{"Bearer\tx", ""},
	}
	for _, tt := range tests {
		token, ok := bearer(tt.header)
		if ok != (tt.token != "") || token != tt.token {
			t.Errorf("bearer(%.20q) = %.20q, %v; want %.20q, %v", tt.header, token, ok, tt.token, tt.token != "")
		}
	}
}

// FuzzBearer checks that bearer never panics and accepts only a Bearer
// scheme with a non-empty, trimmed token of at most 512 bytes. Seeds are in
// testdata/fuzz/FuzzBearer.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer x", "bearer  y ", "Basic x", "Bearer", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, ok := bearer(header)
		if !ok {
			if token != "" {
				t.Fatalf("bearer(%q) rejected but returned token %q", header, token)
			}
			return
		}
		if len(header) < 7 || !strings.EqualFold(header[:7], "bearer ") {
			t.Fatalf("bearer(%q) accepted a header without the Bearer scheme", header)
		}
		if token == "" || len(token) > 512 || token != strings.TrimSpace(token) {
			t.Fatalf("bearer(%q) = %q", header, token)
		}
		if !strings.Contains(header, token) {
			t.Fatalf("bearer(%q) = %q, not part of the header", header, token)
		}
	})
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok, err := newToken()
		if err != nil {
			t.Fatal(err)
		}
		raw, ok := strings.CutPrefix(tok, "slc_")
		if !ok {
			t.Fatalf("token %q lacks the slc_ prefix", tok)
		}
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || len(b) != 32 {
			t.Fatalf("token %q does not carry 32 random bytes: %v", tok, err)
		}
		if seen[tok] {
			t.Fatalf("token %q repeated", tok)
		}
		seen[tok] = true
		// A fresh token passes the header parser unchanged.
		if got, ok := bearer("Bearer " + tok); !ok || got != tok {
			t.Fatalf("bearer(Bearer %s) = %q, %v", tok, got, ok)
		}
	}
}

func TestHashToken(t *testing.T) {
	t.Parallel()
	a, b := hashToken("slc_a"), hashToken("slc_b")
	if len(a) != 32 || bytes.Equal(a, b) || !bytes.Equal(a, hashToken("slc_a")) {
		t.Fatalf("hashToken: %x %x", a, b)
	}
	if bytes.Contains(a, []byte("slc_a")) {
		t.Fatal("hash contains the token")
	}
}
