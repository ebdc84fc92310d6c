package authz

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	procLogin  = "/sluice.auth.v1.AuthService/Login"
	procAvatar = "/sluice.user.v1.UserService/SetAvatarUrl"
	procAdmin  = "/sluice.color.v1.ColorService/SetPermission"
)

// testTable is a small policy table in the shape the services build: a
// public procedure, an owner-only one and a role-gated one.
func testTable(t *testing.T) *Table {
	t.Helper()
	tab, err := NewTable(nil,
		Policy{Procedure: procLogin, Action: "auth.login", Public: true, Description: "anyone with a password"},
		Policy{Procedure: procAvatar, Action: "user.set_avatar_url", Description: "the user, on their own profile",
			Check: func(_ context.Context, p *Principal, r Resource, _ Facts) error { return RequireUser(p, r.Owner) }},
		Policy{Procedure: procAdmin, Action: "color.set_permission", Description: "admins",
			Check: func(_ context.Context, p *Principal, _ Resource, _ Facts) error { return RequireRole(p, "admin") }},
	)
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	return tab
}

func TestNewTableRejectsBadPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		policies []Policy
	}{
		{"duplicate procedure", []Policy{
			{Procedure: procAvatar, Action: "user.set_avatar_url"},
			{Procedure: procAvatar, Action: "user.other"},
		}},
		{"missing procedure", []Policy{{Action: "user.set_avatar_url"}}},
		{"missing action", []Policy{{Procedure: procAvatar}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tab, err := NewTable(nil, tt.policies...); err == nil {
				t.Fatalf("NewTable = %v, nil; want an error", tab)
			}
		})
	}
}

func TestTableMissing(t *testing.T) {
	t.Parallel()
	tab := testTable(t)
	got := tab.Missing([]string{"/z.Service/B", procLogin, "/a.Service/A", procAvatar, procAdmin})
	want := []string{"/a.Service/A", "/z.Service/B"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Missing = %q, want %q", got, want)
	}
	if got := tab.Missing([]string{procLogin, procAvatar, procAdmin}); len(got) != 0 {
		t.Fatalf("Missing of covered procedures = %q, want none", got)
	}
}

func TestTableAdmit(t *testing.T) {
	t.Parallel()
	tab := testTable(t)
	user := WithPrincipal(context.Background(), &Principal{ID: "u1"})
	anon := context.Background()

	tests := []struct {
		name      string
		ctx       context.Context
		procedure string
		want      error // nil, ErrUnauthenticated or ErrDenied
	}{
		{"public without principal", anon, procLogin, nil},
		{"public with principal", user, procLogin, nil},
		{"non-public without principal", anon, procAvatar, ErrUnauthenticated},
		{"non-public with principal", user, procAvatar, nil},
		{"unknown procedure is denied by default", user, "/sluice.x.v1.X/Unknown", ErrDenied},
		{"unknown procedure without principal is denied", anon, "/sluice.x.v1.X/Unknown", ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tab.Admit(tt.ctx, tt.procedure)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Admit = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Admit = %v, want %v", err, tt.want)
			}
			if tt.want == ErrDenied {
				var d *Denial
				if !errors.As(err, &d) || d.Rule != "default-deny" || d.Hide {
					t.Fatalf("Admit = %#v, want a visible default-deny Denial", err)
				}
			}
		})
	}
}

func TestTableAuthorize(t *testing.T) {
	t.Parallel()
	tab := testTable(t)
	as := func(p *Principal) context.Context { return WithPrincipal(context.Background(), p) }
	alice := &Principal{ID: "alice"}
	admin := &Principal{ID: "root", Roles: []string{"member", "admin"}}

	// principal × action × resource → allow / deny / unauthenticated.
	tests := []struct {
		name      string
		ctx       context.Context
		procedure string
		res       Resource
		want      error
	}{
		{"owner sets own avatar", as(alice), procAvatar, Resource{Owner: "alice"}, nil},
		{"other user's avatar", as(alice), procAvatar, Resource{Owner: "bob"}, ErrDenied},
		{"admin is not the owner", as(admin), procAvatar, Resource{Owner: "alice"}, ErrDenied},
		{"anonymous avatar", context.Background(), procAvatar, Resource{Owner: "alice"}, ErrUnauthenticated},
		{"admin sets permission", as(admin), procAdmin, Resource{}, nil},
		{"member sets permission", as(alice), procAdmin, Resource{}, ErrDenied},
		{"public login runs no check", context.Background(), procLogin, Resource{}, nil},
		{"no policy", as(admin), "/sluice.x.v1.X/Unknown", Resource{}, ErrDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tab.Authorize(tt.ctx, tt.procedure, tt.res)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Authorize = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Authorize = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAuthorizeReturnsCheckError(t *testing.T) {
	t.Parallel()
	hidden := Hide("secret", "not a member")
	calls := 0
	var seen Resource
	tab, err := NewTable(nil, Policy{Procedure: procAvatar, Action: "a", Check: func(_ context.Context, p *Principal, r Resource, _ Facts) error {
		calls++
		seen = r
		if p == nil || p.ID != "u1" {
			t.Errorf("check got principal %+v, want u1", p)
		}
		return hidden
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := Resource{Key: "user/9", Scope: "user/9", Owner: "9"}
	err = tab.Authorize(WithPrincipal(context.Background(), &Principal{ID: "u1"}), procAvatar, res)
	if err != hidden {
		t.Fatalf("Authorize = %v, want the check's error", err)
	}
	if !errors.Is(err, ErrHidden) || errors.Is(err, ErrDenied) {
		t.Fatalf("hidden denial: Is(ErrHidden) = %v, Is(ErrDenied) = %v", errors.Is(err, ErrHidden), errors.Is(err, ErrDenied))
	}
	if calls != 1 || !reflect.DeepEqual(seen, res) {
		t.Fatalf("check ran %d times with %+v, want once with %+v", calls, seen, res)
	}
	// Admit alone never runs the check.
	if err := tab.Admit(WithPrincipal(context.Background(), &Principal{ID: "u1"}), procAvatar); err != nil || calls != 1 {
		t.Fatalf("Admit = %v and ran the check %d times, want nil and 1", err, calls)
	}
}

func TestRequireUserAndRole(t *testing.T) {
	t.Parallel()
	alice := &Principal{ID: "alice", Roles: []string{"admin"}}
	tests := []struct {
		name string
		err  error
		deny bool
	}{
		{"user self", RequireUser(alice, "alice"), false},
		{"user other", RequireUser(alice, "bob"), true},
		{"user empty id", RequireUser(alice, ""), true},
		{"user nil principal", RequireUser(nil, ""), true},
		{"role held", RequireRole(alice, "admin"), false},
		{"role missing", RequireRole(alice, "owner"), true},
		{"role nil principal", RequireRole(nil, "admin"), true},
		{"role empty roles", RequireRole(&Principal{ID: "x"}, "admin"), true},
	}
	for _, tt := range tests {
		if !tt.deny {
			if tt.err != nil {
				t.Errorf("%s: got %v, want nil", tt.name, tt.err)
			}
			continue
		}
		var d *Denial
		if !errors.As(tt.err, &d) || d.Hide || !errors.Is(tt.err, ErrDenied) {
			t.Errorf("%s: got %v, want a visible Denial", tt.name, tt.err)
		}
	}
}

func TestDenialMessages(t *testing.T) {
	t.Parallel()
	deny := Deny("rule-a", "needs admin")
	if got := deny.Error(); got != "permission denied: needs admin" {
		t.Errorf("Deny message = %q", got)
	}
	hide := Hide("rule-b", "secret reason")
	if got := hide.Error(); got != "not found" {
		t.Errorf("Hide message = %q, want %q (the reason must not leak)", got, "not found")
	}
	if errors.Is(deny, ErrHidden) || !errors.Is(deny, ErrDenied) {
		t.Error("Deny must match ErrDenied only")
	}
	if !errors.Is(hide, ErrHidden) || errors.Is(hide, ErrDenied) {
		t.Error("Hide must match ErrHidden only")
	}
}

func TestTablePrint(t *testing.T) {
	t.Parallel()
	tab := testTable(t)
	var buf bytes.Buffer
	if err := tab.Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("Print wrote %d lines, want a header and 3 procedures:\n%s", len(lines), out)
	}
	for _, want := range []string{procLogin, procAvatar, procAdmin, "auth.login", "user.set_avatar_url", "color.set_permission", "admins"} {
		if !strings.Contains(out, want) {
			t.Errorf("Print output lacks %q:\n%s", want, out)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, procLogin) && !strings.Contains(l, "public") {
			t.Errorf("public procedure not marked public: %q", l)
		}
		if strings.Contains(l, procAdmin) && strings.Contains(l, "public") {
			t.Errorf("non-public procedure marked public: %q", l)
		}
	}
	// Sorted by procedure, so the audit view is stable.
	if !(strings.Index(out, procLogin) < strings.Index(out, procAdmin) && strings.Index(out, procAdmin) < strings.Index(out, procAvatar)) {
		t.Errorf("Print output not sorted by procedure:\n%s", out)
	}
}
