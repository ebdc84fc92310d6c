package edge

import (
	"errors"
	"net/url"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidateAvatarURL checks that every avatar URL the validator accepts
// is one a client can safely load: short, parseable, http(s), with a host.
// Seeds are in testdata/fuzz/FuzzValidateAvatarURL.
func FuzzValidateAvatarURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a.png",
		"http://[::1]:80/",
		"javascript:alert(1)",
		"https://u:p@example.com/",
	} {
		f.Add(s)
	}
	v := NewValidator()
	f.Fuzz(func(t *testing.T, s string) {
		err := v.Struct(avatarCmd{AvatarURL: s})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0].Field != "avatar_url" {
				t.Fatalf("Struct(%q) = %v, want one violation on avatar_url", s, err)
			}
			return
		}
		if len(s) > 2048 {
			t.Fatalf("accepted %d bytes, limit is 2048", len(s))
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q, which url.Parse rejects: %v", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted %q with scheme %q", s, u.Scheme)
		}
		if u.Host == "" || u.Hostname() == "" {
			t.Fatalf("accepted %q without a host", s)
		}
		if u.User != nil {
			t.Fatalf("accepted %q with user info", s)
		}
	})
}

// FuzzValidateDisplayName checks that every accepted display name is valid
// UTF-8 of 1 to 64 characters without control or format characters.
// Seeds are in testdata/fuzz/FuzzValidateDisplayName.
func FuzzValidateDisplayName(f *testing.F) {
	for _, s := range []string{"Ada", "a\u200bb", "a\xff", "🙂"} {
		f.Add(s)
	}
	v := NewValidator()
	f.Fuzz(func(t *testing.T, s string) {
		err := v.Struct(displayNameCmd{DisplayName: s})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0].Field != "display_name" {
				t.Fatalf("Struct(%q) = %v, want one violation on display_name", s, err)
			}
			return
		}
		if !utf8.ValidString(s) {
			t.Fatalf("accepted invalid UTF-8 %q", s)
		}
		if n := utf8.RuneCountInString(s); n < 1 || n > 64 {
			t.Fatalf("accepted %q of %d characters", s, n)
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("accepted %q with control or format character %U", s, r)
			}
		}
	})
}
