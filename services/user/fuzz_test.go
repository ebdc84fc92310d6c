package user

import (
	"errors"
	"net/url"
	"testing"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/services/edge"
)

// FuzzSetAvatarUrl decodes arbitrary bytes as the request and validates it
// as the handler does: accepted URLs are absolute http(s) with a host and at
// most 2048 bytes; refusals name the field.
func FuzzSetAvatarUrl(f *testing.F) {
	for _, u := range []string{"https://example.com/a.png", "ftp://x", "", "http://[::1]:80/x", "https://u@h/"} {
		b, _ := proto.Marshal(&userv1.SetAvatarUrlRequest{AvatarUrl: u})
		f.Add(b)
	}
	v := edge.NewValidator()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &userv1.SetAvatarUrlRequest{}
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		err := v.Struct(setAvatarURL{AvatarURL: msg.GetAvatarUrl()})
		if err != nil {
			var ve *edge.ValidationError
			if !errors.As(err, &ve) || ve.Violations[0].Field != "avatar_url" {
				t.Fatalf("refusal does not name avatar_url: %v", err)
			}
			return
		}
		s := msg.GetAvatarUrl()
		u, perr := url.Parse(s)
		if len(s) > 2048 || perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzSetDisplayName: accepted names are 1–64 characters of valid UTF-8
// without control or format characters.
func FuzzSetDisplayName(f *testing.F) {
	for _, n := range []string{"Alice", "", "a\nb", "é", "\u200b"} {
		b, _ := proto.Marshal(&userv1.SetDisplayNameRequest{DisplayName: n})
		f.Add(b)
	}
	v := edge.NewValidator()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &userv1.SetDisplayNameRequest{}
		if proto.Unmarshal(data, msg) != nil {
			return
		}
		err := v.Struct(setDisplayName{DisplayName: msg.GetDisplayName()})
		if err != nil {
			var ve *edge.ValidationError
			if !errors.As(err, &ve) || ve.Violations[0].Field != "display_name" {
				t.Fatalf("refusal does not name display_name: %v", err)
			}
			return
		}
		s := msg.GetDisplayName()
		n := utf8.RuneCountInString(s)
		if !utf8.ValidString(s) || n < 1 || n > 64 {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("accepted %q with %U", s, r)
			}
		}
	})
}
