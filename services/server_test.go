package services

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
)

// Every procedure declared in the protos has exactly one policy: the server
// refuses to start otherwise (default deny).
func TestEveryProcedureHasAPolicy(t *testing.T) {
	procs := Procedures()
	// The walk must see the procedures of every generated service.
	for _, want := range []string{
		authv1connect.AuthServiceLoginProcedure,
		authv1connect.AuthServiceLogoutProcedure,
		authv1connect.AuthServiceWhoAmIProcedure,
		userv1connect.UserServiceSetAvatarUrlProcedure,
		userv1connect.UserServiceSetDisplayNameProcedure,
		syncv1connect.SyncServiceSubscribeProcedure,
		syncv1connect.SyncServiceGetProcedure,
	} {
		if !slices.Contains(procs, want) {
			t.Errorf("procedure walk missed %s", want)
		}
	}
	table, _, err := NewPolicyTable(nil, Modules(nil))
	if err != nil {
		t.Fatalf("policy table: %v", err)
	}
	if missing := table.Missing(procs); len(missing) > 0 {
		t.Fatalf("procedures without a policy: %v", missing)
	}
	// And no policy names a procedure that does not exist.
	for _, p := range Policies(Modules(nil)) {
		if !slices.Contains(procs, p.Procedure) {
			t.Errorf("policy for unknown procedure %s", p.Procedure)
		}
	}
}

// Only Login is public; everything else needs a principal.
func TestOnlyLoginIsPublic(t *testing.T) {
	table, _, err := NewPolicyTable(nil, Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, proc := range Procedures() {
		err := table.Admit(context.Background(), proc)
		if proc == authv1connect.AuthServiceLoginProcedure {
			if err != nil {
				t.Errorf("%s refused anonymously: %v", proc, err)
			}
			continue
		}
		if !errors.Is(err, authz.ErrUnauthenticated) {
			t.Errorf("%s admitted anonymously (err %v)", proc, err)
		}
	}
	if err := table.Admit(context.Background(), "/sluice.x.v1.Nope/Call"); !errors.Is(err, authz.ErrDenied) {
		t.Errorf("unknown procedure admitted: %v", err)
	}
}

// The policy matrix of the user profile: only the owner may change it.
func TestProfilePolicies(t *testing.T) {
	table, _, err := NewPolicyTable(nil, Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	alice := &authz.Principal{ID: "alice"}
	bob := &authz.Principal{ID: "bob"}
	admin := &authz.Principal{ID: "root", Roles: []string{"admin"}}
	for _, proc := range []string{userv1connect.UserServiceSetAvatarUrlProcedure, userv1connect.UserServiceSetDisplayNameProcedure} {
		for _, tc := range []struct {
			p     *authz.Principal
			allow bool
		}{{alice, true}, {bob, false}, {admin, false}} {
			ctx := authz.WithPrincipal(context.Background(), tc.p)
			err := table.Authorize(ctx, proc, authz.Resource{Key: "user/alice", Scope: "user/alice", Owner: "alice"})
			if (err == nil) != tc.allow {
				t.Errorf("%s by %s: err %v, allow %v", proc, tc.p.ID, err, tc.allow)
			}
		}
	}
}
