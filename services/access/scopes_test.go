package access

import "testing"

func TestScopesOf(t *testing.T) {
	s := NewScopes("user", "channel").Under("message", "channel").Under("chanmember", "channel")
	for key, want := range map[string]string{
		"user/alice":          "user/alice",
		"channel/o1.c":        "channel/o1.c",
		"message/o1.c/m1":     "channel/o1.c",
		"chanmember/o1.c/bob": "channel/o1.c",
		"message/o1.c":        "", // no id: not a message key
		"message//m1":         "",
		"unknown/x":           "",
		"global-color":        "",
	} {
		got, ok := s.Of(key)
		if got != want || ok != (want != "") {
			t.Errorf("Of(%q) = %q, %v; want %q", key, got, ok, want)
		}
	}
}
