package authz

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func testReadRules(t *testing.T) *ReadRules {
	t.Helper()
	rr, err := NewReadRules(
		ReadRule{Type: "user", Description: "any authenticated user", Check: func(context.Context, *Principal, string, Facts) error { return nil }},
		ReadRule{Type: "channel", Description: "members of the channel", Check: func(_ context.Context, p *Principal, id string, _ Facts) error {
			if p.ServerData["member_of"] == id {
				return nil
			}
			return Deny("channel-member", "not a member of channel "+id)
		}},
		ReadRule{Type: "global-color", Description: "admins", Check: func(_ context.Context, p *Principal, id string, _ Facts) error {
			if id != "" {
				return errors.New("unexpected id " + id)
			}
			if !p.HasRole("admin") {
				return errors.New("plain error from a rule")
			}
			return nil
		}},
	)
	if err != nil {
		t.Fatalf("NewReadRules: %v", err)
	}
	return rr
}

func TestNewReadRulesRejectsDuplicates(t *testing.T) {
	t.Parallel()
	_, err := NewReadRules(ReadRule{Type: "user"}, ReadRule{Type: "user"})
	if err == nil {
		t.Fatal("NewReadRules with a duplicate type succeeded")
	}
}

func TestSplitScope(t *testing.T) {
	t.Parallel()
	tests := []struct{ scope, typ, id string }{
		{"user/42", "user", "42"},
		{"global-color", "global-color", ""},
		{"channel/7/x", "channel", "7/x"},
		{"", "", ""},
		{"/x", "", "x"},
	}
	for _, tt := range tests {
		typ, id := SplitScope(tt.scope)
		if typ != tt.typ || id != tt.id {
			t.Errorf("SplitScope(%q) = %q, %q; want %q, %q", tt.scope, typ, id, tt.typ, tt.id)
		}
	}
}

func TestCanRead(t *testing.T) {
	t.Parallel()
	rr := testReadRules(t)
	as := func(p *Principal) context.Context { return WithPrincipal(context.Background(), p) }
	member := &Principal{ID: "m", ServerData: map[string]any{"member_of": "7"}}
	admin := &Principal{ID: "a", Roles: []string{"admin"}}
	service := &Principal{ID: "mailer", Service: true}

	// principal × scope → allow / hide / unauthenticated.
	tests := []struct {
		name  string
		ctx   context.Context
		scope string
		want  error // nil, ErrHidden or ErrUnauthenticated
	}{
		{"anonymous", context.Background(), "user/1", ErrUnauthenticated},
		{"any user reads profiles", as(member), "user/1", nil},
		{"member reads own channel", as(member), "channel/7", nil},
		{"member of another channel", as(member), "channel/8", ErrHidden},
		{"unknown scope type", as(admin), "secret/1", ErrHidden},
		{"unknown scope type, service principal", as(service), "secret/1", ErrHidden},
		{"service principal bypasses rule", as(service), "channel/8", nil},
		{"admin reads global color", as(admin), "global-color", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := rr.CanRead(tt.ctx, tt.scope, nil)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("CanRead(%q) = %v, want nil", tt.scope, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("CanRead(%q) = %v, want %v", tt.scope, err, tt.want)
			}
			if tt.want == ErrHidden {
				// A refused read never says more than "not found".
				if errors.Is(err, ErrDenied) {
					t.Errorf("CanRead(%q) is also ErrDenied: existence would leak", tt.scope)
				}
				if err.Error() != "not found" {
					t.Errorf("CanRead(%q) message = %q, want %q", tt.scope, err.Error(), "not found")
				}
			}
		})
	}
}

func TestCanReadKeepsRuleName(t *testing.T) {
	t.Parallel()
	rr := testReadRules(t)
	err := rr.CanRead(WithPrincipal(context.Background(), &Principal{ID: "x"}), "channel/9", nil)
	var d *Denial
	if !errors.As(err, &d) {
		t.Fatalf("CanRead = %v, want a Denial", err)
	}
	if d.Rule != "channel-member" || !d.Hide || !strings.Contains(d.Reason, "channel 9") {
		t.Fatalf("Denial = %+v, want the rule's name and reason, hidden", d)
	}
}

// A rule that fails with a plain error (a fact loader failed) is not a
// decision: the error comes back as it is, so the caller fails the call
// instead of revoking access or answering "not found" for a transient fault.
func TestCanReadPropagatesLoaderErrors(t *testing.T) {
	t.Parallel()
	rr := testReadRules(t)
	err := rr.CanRead(WithPrincipal(context.Background(), &Principal{ID: "x"}), "global-color", nil)
	var d *Denial
	if err == nil || errors.As(err, &d) || err.Error() != "plain error from a rule" {
		t.Fatalf("CanRead with a failing rule = %#v, want the rule's own error", err)
	}
}

func TestReadRulesPrint(t *testing.T) {
	t.Parallel()
	rr := testReadRules(t)
	var buf bytes.Buffer
	if err := rr.Print(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"user", "channel", "global-color", "members of the channel", "admins"} {
		if !strings.Contains(out, want) {
			t.Errorf("Print output lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "channel") > strings.Index(out, "global-color") {
		t.Errorf("Print output not sorted by scope type:\n%s", out)
	}
}

func TestRequireAccess(t *testing.T) {
	t.Parallel()
	rr := testReadRules(t)
	ctx := WithPrincipal(context.Background(), &Principal{ID: "x"})
	if err := rr.RequireAccess(ctx, "user/1", nil); err != nil {
		t.Fatalf("readable scope: %v", err)
	}
	err := rr.RequireAccess(ctx, "channel/9", nil)
	if !errors.Is(err, ErrDenied) || errors.Is(err, ErrHidden) {
		t.Fatalf("unreadable scope: %v, want a visible denial", err)
	}
	if err := rr.RequireAccess(context.Background(), "user/1", nil); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("anonymous: %v", err)
	}
}
