package message

import (
	"fmt"
	"strings"
	"testing"
)

func TestMentions(t *testing.T) {
	for text, want := range map[string]string{
		"hi @alice and @bob.":    "[alice bob]",
		"@alice @alice @Alice":   "[alice Alice]",
		"mail me at x@alice.com": "[]",
		"(@carol) @dave-":        "[carol dave]",
		"@@eve @ fred":           "[]",
		"no mentions":            "[]",
		"@userA, @userB: look":   "[userA userB]",
	} {
		if got := fmt.Sprint(Mentions(text)); got != want {
			t.Errorf("Mentions(%q) = %s, want %s", text, got, want)
		}
	}
	many := strings.Repeat("@u ", 1) + strings.Repeat("x ", 1)
	for i := 0; i < 30; i++ {
		many += fmt.Sprintf("@u%d ", i)
	}
	if n := len(Mentions(many)); n != MaxMentions {
		t.Errorf("%d mentions kept, want %d", n, MaxMentions)
	}
}

// FuzzMentions: never panics, ids are distinct, non-empty, bounded.
func FuzzMentions(f *testing.F) {
	f.Add("hi @alice and @bob.")
	f.Add("@@@")
	f.Fuzz(func(t *testing.T, text string) {
		ids := Mentions(text)
		seen := map[string]bool{}
		if len(ids) > MaxMentions {
			t.Fatalf("%d mentions", len(ids))
		}
		for _, id := range ids {
			if id == "" || len(id) > 64 || seen[id] || strings.ContainsAny(id, "@/ ") {
				t.Fatalf("bad id %q in %q", id, text)
			}
			seen[id] = true
		}
	})
}
