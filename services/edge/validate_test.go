package edge

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Command structs in the shape the services declare.
type avatarCmd struct {
	AvatarURL string `field:"avatar_url" validate:"required,maxbytes=2048,httpurl"`
}

type displayNameCmd struct {
	DisplayName string `field:"display_name" validate:"required,utf8,nocontrol,min=1,max=64"`
}

type bytesCmd struct {
	Note string `field:"note" validate:"maxbytes=8"`
}

type noFieldTagCmd struct {
	Title string `validate:"required"`
}

type twoFieldsCmd struct {
	Username string `field:"username" validate:"required,maxbytes=16,utf8,nocontrol"`
	Password string `field:"password" validate:"required,maxbytes=32"`
}

// violations validates cmd and returns its violations; nil when valid.
func violations(t *testing.T, v *Validator, cmd any) []FieldViolation {
	t.Helper()
	err := v.Struct(cmd)
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Struct(%+v) = %v, want a *ValidationError", cmd, err)
	}
	if len(ve.Violations) == 0 {
		t.Fatalf("Struct(%+v) returned a ValidationError without violations", cmd)
	}
	return ve.Violations
}

func TestValidateHTTPURL(t *testing.T) {
	t.Parallel()
	v := NewValidator()
	tests := []struct {
		url string
		ok  bool
	}{
		{"http://example.com", true},
		{"https://example.com/a/b.png?size=64#x", true},
		{"https://example.com:8443/avatar", true},
		{"HTTPS://Example.com/a.png", true},
		{"http://[::1]:8080/a", true},
		{"http://127.0.0.1/a", true},
		{"https://xn--bcher-kva.example/a", true},

		{"", false},
		{"ftp://example.com/a.png", false},
		{"javascript:alert(1)", false},
		{"javascript://example.com/%0aalert(1)", false},
		{"data:image/png;base64,AAAA", false},
		{"file:///etc/passwd", false},
		{"/relative/path.png", false},
		{"//example.com/a.png", false},
		{"example.com/a.png", false},
		{"http://", false},
		{"http:///path", false},
		{"http://:80/path", false},
		{"http:example.com", false},
		{"https://user:pass@example.com/a", false},
		{"https://user@example.com/a", false},
		{"https://exa mple.com/a", false},
		{"https://example.com/a b.png", false},
		{" https://example.com/a", false},
		{"https://example.com/a\t", false},
		{"https://example.com/\na", false},
		{"https://example.com/\x00", false},
		{"https://example.com/\x7f", false},
		{"https://" + strings.Repeat("a", 2048) + ".com", false}, // over maxbytes
	}
	for _, tt := range tests {
		got := violations(t, v, avatarCmd{AvatarURL: tt.url})
		if tt.ok && got != nil {
			t.Errorf("avatar_url %q rejected: %v", tt.url, got)
		}
		if !tt.ok {
			if len(got) != 1 || got[0].Field != "avatar_url" {
				t.Errorf("avatar_url %q: violations %v, want one on avatar_url", tt.url, got)
			}
		}
	}
}

func TestValidateMaxBytesCountsBytes(t *testing.T) {
	t.Parallel()
	v := NewValidator()
	tests := []struct {
		s  string
		ok bool
	}{
		{"", true},
		{"12345678", true},
		{"123456789", false},
		{"éééé", true},         // 4 runes, 8 bytes
		{"ééééé", false},       // 5 runes, 10 bytes: within 8 runes, over 8 bytes
		{"日本", true},           // 6 bytes
		{"日本語", false},         // 3 runes, 9 bytes
		{"🙂🙂", true},           // 8 bytes
		{"🙂🙂a", false},         // 3 runes, 9 bytes
		{"\xff\xff\xff", true}, // bytes, not runes: 3 bytes
	}
	for _, tt := range tests {
		got := violations(t, v, bytesCmd{Note: tt.s})
		if tt.ok != (got == nil) {
			t.Errorf("maxbytes=8 on %q (%d bytes): violations %v, want ok=%v", tt.s, len(tt.s), got, tt.ok)
		}
		if got != nil && (got[0].Field != "note" || got[0].Description != "must be at most 8 bytes") {
			t.Errorf("maxbytes violation = %+v", got[0])
		}
	}
}

func TestValidateDisplayName(t *testing.T) {
	t.Parallel()
	v := NewValidator()
	tests := []struct {
		name string
		s    string
		desc string // "" when valid
	}{
		{"ascii", "Ada Lovelace", ""},
		{"accents", "Zoë Ångström", ""},
		{"emoji", "🙂 happy", ""},
		{"cjk", "山田太郎", ""},
		{"64 runes", strings.Repeat("é", 64), ""},
		{"empty", "", "is required"},
		{"65 runes", strings.Repeat("a", 65), "must be at most 64 characters"},
		{"65 multibyte runes", strings.Repeat("é", 65), "must be at most 64 characters"},
		{"NUL", "a\x00b", "must not contain control characters"},
		{"newline", "a\nb", "must not contain control characters"},
		{"tab", "a\tb", "must not contain control characters"},
		{"DEL", "a\x7fb", "must not contain control characters"},
		{"NEL U+0085", "a\u0085b", "must not contain control characters"},
		{"zero width space U+200B (Cf)", "a\u200bb", "must not contain control characters"},
		{"right-to-left override U+202E (Cf)", "a\u202eb", "must not contain control characters"},
		{"BOM U+FEFF (Cf)", "\ufeffab", "must not contain control characters"},
		{"soft hyphen U+00AD (Cf)", "a\u00adb", "must not contain control characters"},
		{"invalid UTF-8", "a\xffb", "must be valid UTF-8"},
		{"truncated UTF-8", "a\xe6\x97", "must be valid UTF-8"},
		{"surrogate half", "a\xed\xa0\x80", "must be valid UTF-8"},
	}
	for _, tt := range tests {
		got := violations(t, v, displayNameCmd{DisplayName: tt.s})
		if tt.desc == "" {
			if got != nil {
				t.Errorf("%s: %q rejected: %v", tt.name, tt.s, got)
			}
			continue
		}
		want := FieldViolation{Field: "display_name", Description: tt.desc}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: %q: violations %v, want [%v]", tt.name, tt.s, got, want)
		}
	}
}

func TestValidateFieldNames(t *testing.T) {
	t.Parallel()
	v := NewValidator()

	got := violations(t, v, twoFieldsCmd{Username: "bad\nname", Password: ""})
	want := []FieldViolation{
		{Field: "username", Description: "must not contain control characters"},
		{Field: "password", Description: "is required"},
	}
	if len(got) != len(want) {
		t.Fatalf("violations = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("violation %d = %v, want %v", i, got[i], want[i])
		}
	}

	// Without a field tag the Go field name is used.
	got = violations(t, v, noFieldTagCmd{})
	if len(got) != 1 || got[0].Field != "Title" {
		t.Errorf("violations = %v, want one on Title", got)
	}

	if err := v.Struct(twoFieldsCmd{Username: "ada", Password: "secret"}); err != nil {
		t.Errorf("valid command rejected: %v", err)
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	err := &ValidationError{Violations: []FieldViolation{
		{Field: "a", Description: "is required"},
		{Field: "b", Description: "must be at most 3 bytes"},
	}}
	if got, want := err.Error(), "invalid request: a: is required; b: must be at most 3 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var ve *ValidationError
	if e := Invalid("x", "is bad"); !errors.As(e, &ve) || len(ve.Violations) != 1 || ve.Violations[0] != (FieldViolation{"x", "is bad"}) {
		t.Errorf("Invalid = %#v", e)
	}
}

func TestValidatorIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	v := NewValidator()
	done := make(chan error, 8)
	for i := range 8 {
		go func() {
			var err error
			for range 200 {
				if i%2 == 0 {
					err = v.Struct(avatarCmd{AvatarURL: "https://example.com/a.png"})
				} else if v.Struct(displayNameCmd{DisplayName: "a\x00"}) == nil {
					err = errors.New("invalid display name accepted")
				}
				if err != nil {
					break
				}
			}
			done <- err
		}()
	}
	timeout := time.After(30 * time.Second)
	for range 8 {
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-timeout:
			t.Fatal("validators did not finish")
		}
	}
}
