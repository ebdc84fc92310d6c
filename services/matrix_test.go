package services

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
)

// facts is a fixed set of records: a seam we own (authz.Facts).
type facts map[string]proto.Message

func (f facts) Get(_ context.Context, key string, msg proto.Message) (bool, error) {
	m, ok := f[key]
	if !ok {
		return false, nil
	}
	proto.Merge(msg, m)
	return true, nil
}

type outcome int

const (
	allow  outcome = iota
	deny           // permission_denied
	hide           // not_found
	unauth         // unauthenticated
)

func (o outcome) String() string {
	return [...]string{"allow", "deny", "hide", "unauthenticated"}[o]
}

func outcomeOf(err error) outcome {
	switch {
	case err == nil:
		return allow
	case errors.Is(err, authz.ErrUnauthenticated):
		return unauth
	case errors.Is(err, authz.ErrHidden):
		return hide
	case errors.Is(err, authz.ErrDenied):
		return deny
	}
	return -1
}

var (
	anonymous = (*authz.Principal)(nil)
	alice     = &authz.Principal{ID: "alice", Roles: []string{"user"}}
	bob       = &authz.Principal{ID: "bob", Roles: []string{"user"}}
	guest     = &authz.Principal{ID: "gina", Roles: []string{"guest"}}
	rootAdmin = &authz.Principal{ID: "root", Roles: []string{"admin"}}
	service   = &authz.Principal{ID: "billing", Service: true, Roles: []string{"service"}}
	who       = []*authz.Principal{anonymous, alice, bob, guest, rootAdmin, service}
)

// The policy matrix: every procedure × {anonymous, the owner (alice),
// another user, a guest, an admin, a service} → allow, deny, hide or
// unauthenticated, decided by admission and the procedure's check over the
// same facts. Each row acts on alice's resources; alice may set red.
func TestPolicyMatrix(t *testing.T) {
	table, _, err := NewPolicyTable(nil, Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := facts{
		"permissions/alice":     &colorv1.Permissions{UserId: "alice", Red: true},
		"orgmember/o1/alice":    &orgv1.Member{OrgId: "o1", UserId: "alice", Role: orgv1.Role_ROLE_OWNER},
		"orgmember/o1/bob":      &orgv1.Member{OrgId: "o1", UserId: "bob", Role: orgv1.Role_ROLE_MEMBER},
		"orgmember/o1/gina":     &orgv1.Member{OrgId: "o1", UserId: "gina", Role: orgv1.Role_ROLE_GUEST},
		"orgmember/o1/root":     &orgv1.Member{OrgId: "o1", UserId: "root", Role: orgv1.Role_ROLE_ADMIN},
		"channel/o1.c":          &channelv1.Channel{Id: "o1.c", OrgId: "o1", CreatedBy: "alice"},
		"chanmember/o1.c/alice": &channelv1.ChannelMember{ChannelId: "o1.c", UserId: "alice"},
		"chanmember/o1.c/gina":  &channelv1.ChannelMember{ChannelId: "o1.c", UserId: "gina"},
		"channel/o1.t":          &channelv1.Channel{Id: "o1.t", OrgId: "o1", CreatedBy: "root", TeamId: "t1"},
		"team/o1/t1":            &orgv1.Team{Id: "t1", OrgId: "o1"},
		"teammember/o1/t1/gina": &orgv1.TeamMember{OrgId: "o1", TeamId: "t1", UserId: "gina"},
		"message/o1.c/m1":       &messagev1.Message{Id: "m1", ChannelId: "o1.c", Author: "alice", Text: "hi"},
		"chanmember/o1.t/gina":  &channelv1.ChannelMember{ChannelId: "o1.t", UserId: "gina"},
		"message/o1.t/m2":       &messagev1.Message{Id: "m2", ChannelId: "o1.t", Author: "root", Text: "hi"},
	}
	// In organization o1 alice is the owner, bob a member, gina a guest and
	// root an admin; channel o1.c (created by alice) has alice and gina;
	// channel o1.t belongs to team t1, whose only member is gina, and has
	// gina. Gina's membership of o1.c is stale: a guest's role does not
	// admit her to an organization-wide channel, so it grants nothing.
	ch := map[string]string{"channel_id": "o1.c"}
	rows := []struct {
		procedure string
		question  authz.Question
		want      [6]outcome // anonymous, alice, bob, guest, admin, service
	}{
		{authv1connect.AuthServiceLoginProcedure, authz.Question{}, [6]outcome{allow, allow, allow, allow, allow, allow}},
		{authv1connect.AuthServiceLogoutProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{authv1connect.AuthServiceWhoAmIProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{userv1connect.UserServiceSetAvatarUrlProcedure, authz.Question{Key: "user/alice"}, [6]outcome{unauth, allow, deny, deny, deny, allow}},
		{userv1connect.UserServiceSetDisplayNameProcedure, authz.Question{Key: "user/alice"}, [6]outcome{unauth, allow, deny, deny, deny, allow}},
		{syncv1connect.SyncServiceSubscribeProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{syncv1connect.SyncServiceGetProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{syncv1connect.SyncServiceListProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{accessv1connect.AccessServiceCheckProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{accessv1connect.AccessServiceWatchProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{colorv1connect.ColorServiceSetColorProcedure, authz.Question{Params: map[string]string{"color": "red"}}, [6]outcome{unauth, allow, deny, deny, deny, allow}},
		{colorv1connect.ColorServiceSetColorProcedure, authz.Question{Params: map[string]string{"color": "green"}}, [6]outcome{unauth, deny, deny, deny, deny, allow}},
		{colorv1connect.ColorServiceSetPermissionProcedure, authz.Question{Params: map[string]string{"user_id": "alice", "color": "red"}}, [6]outcome{unauth, deny, deny, deny, allow, allow}},
		{orgv1connect.OrgServiceListMyOrgsProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{channelv1connect.ChannelServiceListChannelsProcedure, authz.Question{Params: map[string]string{"org_id": "o1"}}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{channelv1connect.ChannelServiceListChannelsProcedure, authz.Question{Params: map[string]string{"org_id": "o2"}}, [6]outcome{unauth, hide, hide, hide, hide, allow}},
		{orgv1connect.OrgServiceCreateOrgProcedure, authz.Question{}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{orgv1connect.OrgServiceAddMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "new", "role": "member"}}, [6]outcome{unauth, allow, deny, deny, allow, allow}},
		{orgv1connect.OrgServiceAddMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "new", "role": "owner"}}, [6]outcome{unauth, allow, deny, deny, deny, allow}},
		{orgv1connect.OrgServiceAddMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o2", "user_id": "new", "role": "member"}}, [6]outcome{unauth, hide, hide, hide, hide, allow}},
		{orgv1connect.OrgServiceChangeRoleProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "bob", "role": "admin"}}, [6]outcome{unauth, allow, deny, deny, allow, allow}},
		{orgv1connect.OrgServiceChangeRoleProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "alice", "role": "member"}}, [6]outcome{unauth, allow, deny, deny, deny, allow}},
		{orgv1connect.OrgServiceRemoveMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "bob"}}, [6]outcome{unauth, allow, allow, deny, allow, allow}},
		{orgv1connect.OrgServiceCreateTeamProcedure, authz.Question{Params: map[string]string{"org_id": "o1"}}, [6]outcome{unauth, allow, deny, deny, allow, allow}},
		{orgv1connect.OrgServiceAddTeamMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "bob"}}, [6]outcome{unauth, allow, deny, deny, allow, allow}},
		{orgv1connect.OrgServiceRemoveTeamMemberProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "user_id": "bob"}}, [6]outcome{unauth, allow, allow, deny, allow, allow}},
		{channelv1connect.ChannelServiceCreateChannelProcedure, authz.Question{Params: map[string]string{"org_id": "o1", "team_id": "t1"}}, [6]outcome{unauth, allow, deny, allow, allow, allow}},
		{channelv1connect.ChannelServiceJoinChannelProcedure, authz.Question{Params: map[string]string{"channel_id": "o1.t"}}, [6]outcome{unauth, deny, deny, allow, deny, allow}},
		{channelv1connect.ChannelServiceCreateChannelProcedure, authz.Question{Params: map[string]string{"org_id": "o1"}}, [6]outcome{unauth, allow, allow, deny, allow, allow}},
		{channelv1connect.ChannelServiceJoinChannelProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, allow, deny, allow, allow}},
		{channelv1connect.ChannelServiceLeaveChannelProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{channelv1connect.ChannelServiceArchiveChannelProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, deny, deny, allow, allow}},
		{messagev1connect.MessageServicePostMessageProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{messagev1connect.MessageServicePostMessageProcedure, authz.Question{Params: map[string]string{"channel_id": "o1.t"}}, [6]outcome{unauth, hide, hide, allow, hide, allow}},
		{messagev1connect.MessageServiceSendTypingProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{messagev1connect.MessageServiceListMessagesProcedure, authz.Question{Params: ch}, [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{messagev1connect.MessageServiceEditMessageProcedure, authz.Question{Key: "message/o1.c/m1"}, [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{messagev1connect.MessageServiceEditMessageProcedure, authz.Question{Key: "message/o1.t/m2"}, [6]outcome{unauth, hide, hide, deny, hide, allow}},
		{messagev1connect.MessageServiceDeleteMessageProcedure, authz.Question{Key: "message/o1.c/m1"}, [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{messagev1connect.MessageServiceDeleteMessageProcedure, authz.Question{Key: "message/o1.t/m2"}, [6]outcome{unauth, hide, hide, deny, hide, allow}},
		// Anyone may answer their own invitation; the handler answers
		// not_found when the caller has none pending.
		{orgv1connect.OrgServiceAcceptInvitationProcedure, authz.Question{Params: map[string]string{"org_id": "o1"}}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{orgv1connect.OrgServiceDeclineInvitationProcedure, authz.Question{Params: map[string]string{"org_id": "o1"}}, [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{adminv1connect.AdminServiceRevokeUserSessionsProcedure, authz.Question{Params: map[string]string{"user_id": "alice"}}, [6]outcome{unauth, deny, deny, deny, deny, allow}},
	}
	covered := map[string]bool{}
	for _, row := range rows {
		covered[row.procedure] = true
		for i, p := range who {
			ctx := context.Background()
			if p != nil {
				ctx = authz.WithPrincipal(ctx, p)
			}
			q := row.question
			q.Procedure = row.procedure
			res, ok := table.ResourceFor(p, q)
			if !ok {
				t.Fatalf("%s: no policy", row.procedure)
			}
			if row.procedure == userv1connect.UserServiceSetAvatarUrlProcedure || row.procedure == userv1connect.UserServiceSetDisplayNameProcedure {
				res.Owner = "alice"
			}
			got := outcomeOf(table.Decide(ctx, row.procedure, res, f))
			if got != row.want[i] {
				name := "anonymous"
				if p != nil {
					name = p.ID
				}
				t.Errorf("%s %v by %s: %v, want %v", row.procedure, row.question.Params, name, got, row.want[i])
			}
		}
	}
	for _, proc := range Procedures() {
		if !covered[proc] {
			t.Errorf("%s has no row in the matrix", proc)
		}
	}
}

// The read-rule matrix: scope × principal → allow, hide or
// unauthenticated. Nobody learns whether an unreadable scope exists.
func TestReadMatrix(t *testing.T) {
	_, reads, err := NewPolicyTable(nil, Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	f := facts{
		"orgmember/o1/alice":    &orgv1.Member{Role: orgv1.Role_ROLE_OWNER},
		"orgmember/o1/bob":      &orgv1.Member{Role: orgv1.Role_ROLE_MEMBER},
		"orgmember/o1/gina":     &orgv1.Member{Role: orgv1.Role_ROLE_GUEST},
		"orgmember/o1/root":     &orgv1.Member{Role: orgv1.Role_ROLE_ADMIN},
		"chanmember/o1.c/alice": &channelv1.ChannelMember{},
		"chanmember/o1.c/gina":  &channelv1.ChannelMember{},
		"channel/o1.c":          &channelv1.Channel{Id: "o1.c", OrgId: "o1"},
		"channel/o1.t":          &channelv1.Channel{Id: "o1.t", OrgId: "o1", TeamId: "t1"},
		"chanmember/o1.t/gina":  &channelv1.ChannelMember{},
		"chanmember/o1.t/bob":   &channelv1.ChannelMember{},
		"teammember/o1/t1/gina": &orgv1.TeamMember{},
		// The organization indexes profiles are read by: gina, a guest,
		// shares team t1 with alice only.
		"userorgs/alice": &orgv1.UserOrgs{Orgs: []*orgv1.OrgRole{{OrgId: "o1", Role: orgv1.Role_ROLE_OWNER, TeamIds: []string{"t1"}}}},
		"userorgs/bob":   &orgv1.UserOrgs{Orgs: []*orgv1.OrgRole{{OrgId: "o1", Role: orgv1.Role_ROLE_MEMBER}}},
		"userorgs/gina":  &orgv1.UserOrgs{Orgs: []*orgv1.OrgRole{{OrgId: "o1", Role: orgv1.Role_ROLE_GUEST, TeamIds: []string{"t1"}}}},
		"userorgs/root":  &orgv1.UserOrgs{Orgs: []*orgv1.OrgRole{{OrgId: "o1", Role: orgv1.Role_ROLE_ADMIN}}},
	}
	rows := []struct {
		scope string
		want  [6]outcome
	}{
		{"user/alice", [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{"user/gina", [6]outcome{unauth, allow, hide, allow, hide, allow}},
		{"user/bob", [6]outcome{unauth, allow, allow, hide, allow, allow}},
		{"user/stranger", [6]outcome{unauth, hide, hide, hide, hide, allow}},
		{"userorgs/alice", [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{"global-color", [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{"permissions/alice", [6]outcome{unauth, allow, hide, hide, allow, allow}},
		{"nonsense/1", [6]outcome{unauth, hide, hide, hide, hide, hide}},
		{"notifications/alice", [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{"org/o1", [6]outcome{unauth, allow, allow, allow, allow, allow}},
		{"org/o2", [6]outcome{unauth, hide, hide, hide, hide, allow}},
		// Gina (a guest) and bob (not in team t1) hold stale memberships:
		// o1.c is not a team channel, and bob left t1; neither grants
		// reading.
		{"channel/o1.c", [6]outcome{unauth, allow, hide, hide, hide, allow}},
		{"channel/o1.t", [6]outcome{unauth, hide, hide, allow, hide, allow}},
		{"orginvitations/o1", [6]outcome{unauth, allow, hide, hide, allow, allow}},
		{"orginvitations/o2", [6]outcome{unauth, hide, hide, hide, hide, allow}},
	}
	for _, row := range rows {
		for i, p := range who {
			ctx := context.Background()
			if p != nil {
				ctx = authz.WithPrincipal(ctx, p)
			}
			if got := outcomeOf(reads.CanRead(ctx, row.scope, f)); got != row.want[i] {
				t.Errorf("read %s as %v: %v, want %v", row.scope, p, got, row.want[i])
			}
		}
	}
}
