package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// admit makes user a member of the organization with role the consented
// way: owner invites, and user (logged in here) accepts.
func admit(t *testing.T, ctx context.Context, base string, owner orgv1connect.OrgServiceClient, orgID, user string, role orgv1.Role) {
	t.Helper()
	res, err := owner.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: user, Role: role}))
	if err != nil {
		t.Fatalf("invite %s: %v", user, err)
	}
	if !res.Msg.GetInvited() {
		t.Fatalf("invite %s: the user was added without an invitation", user)
	}
	invitee := chatLogin(t, base, user)
	if _, err := invitee.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); err != nil {
		t.Fatalf("%s accepts: %v", user, err)
	}
}

// subscribeCode opens a stream on scope as c and returns the code it ends
// with before its first event (CodeUnknown: it was admitted).
func subscribeCode(t *testing.T, ctx context.Context, c *client, scope string) connect.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := c.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: scope}}}))
	if err != nil {
		return codeOf(err)
	}
	defer s.Close()
	if s.Receive() {
		return connect.CodeUnknown
	}
	return codeOf(s.Err())
}

// channelCreatedJobs counts the channel_created notifications queued for
// user.
func channelCreatedJobs(t *testing.T, ctx context.Context, app *testApp, user string) int {
	t.Helper()
	var n int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE kind = 'notify.channel_created' AND payload->>'user_id' = $1`, user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// untilKey returns the next record or tombstone event of key on s.
func untilKey(t *testing.T, s *events, key string) *syncv1.SubscribeResponse {
	t.Helper()
	for {
		ev := s.next(t, 10*time.Second)
		if ev.GetRecord().GetRecord().GetKey() == key || ev.GetRemoved().GetKey() == key {
			return ev
		}
	}
}

// A stranger who creates an organization and "adds" a user only invites
// them: until the invitee accepts, the stranger cannot read their profile
// and sends them no channel notifications. The invitee sees the invitation
// on their own stream, the organization's managers on theirs; accepting
// makes the membership, and every misuse answers its own code without
// writing anything.
func TestMembershipNeedsConsent(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	mallory := chatLogin(t, app.url, "alice") // the stranger
	bob := chatLogin(t, app.url, "bob")       // the victim
	carol := chatLogin(t, app.url, "carol")

	o, err := mallory.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Totally Legit"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	invitations := bob.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "userorgs/bob"}}})
	invitations.untilSynced(t)
	add, err := mallory.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "bob", Role: orgv1.Role_ROLE_MEMBER}))
	if err != nil {
		t.Fatal(err)
	}
	if !add.Msg.GetInvited() || add.Msg.GetWritten().GetKey() != "orginvitation/"+orgID+"/bob" {
		t.Fatalf("AddMember by a user = %v, want an invitation", add.Msg)
	}

	// Nothing is granted yet.
	if code := subscribeCode(t, ctx, mallory.client, "user/bob"); code != connect.CodeNotFound {
		t.Fatalf("inviter reading the invitee's profile: %v, want not_found", code)
	}
	if code := subscribeCode(t, ctx, bob.client, "org/"+orgID); code != connect.CodeNotFound {
		t.Fatalf("invitee reading the organization: %v, want not_found", code)
	}
	if _, err := mallory.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "spam"})); err != nil {
		t.Fatal(err)
	}
	if n := channelCreatedJobs(t, ctx, app, "bob"); n != 0 {
		t.Fatalf("%d channel_created notifications for the invitee, want 0", n)
	}
	mine, err := bob.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
	if err != nil || len(mine.Msg.GetOrgs()) != 0 {
		t.Fatalf("invitee's organizations: %v, %v; want none", mine, err)
	}

	// The invitee sees the invitation on their own stream; the
	// organization's owner on the organization's; others on neither.
	rec := untilKey(t, invitations, "invitation/bob/"+orgID).GetRecord().GetRecord()
	inv := &orgv1.Invitation{}
	if err := rec.GetPayload().UnmarshalTo(inv); err != nil {
		t.Fatal(err)
	}
	if inv.GetOrgName() != "Totally Legit" || inv.GetInvitedBy() != "alice" || inv.GetRole() != orgv1.Role_ROLE_MEMBER {
		t.Fatalf("invitation = %v", inv)
	}
	pending := mallory.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "orginvitations/" + orgID}}})
	if got := untilKey(t, pending, "orginvitation/"+orgID+"/bob").GetRecord().GetRecord(); got == nil {
		t.Fatal("the owner does not see the pending invitation")
	}
	for _, c := range []*chatClient{bob, carol} {
		if code := subscribeCode(t, ctx, c.client, "orginvitations/"+orgID); code != connect.CodeNotFound {
			t.Fatalf("non-manager reading the organization's invitations: %v, want not_found", code)
		}
	}
	if code := subscribeCode(t, ctx, carol.client, "userorgs/bob"); code != connect.CodeNotFound {
		t.Fatalf("another user reading bob's invitations: %v, want not_found", code)
	}

	// Inviting again, or answering an invitation one does not hold, is
	// refused and writes nothing.
	before := rec.GetVersion()
	if _, err := mallory.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "bob", Role: orgv1.Role_ROLE_ADMIN})); codeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("re-inviting: %v, want already_exists", err)
	}
	for name, call := range map[string]func() error{
		"accept": func() error {
			_, err := carol.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID}))
			return err
		},
		"decline": func() error {
			_, err := carol.org.DeclineInvitation(ctx, connect.NewRequest(&orgv1.DeclineInvitationRequest{OrgId: orgID}))
			return err
		},
	} {
		if err := call(); codeOf(err) != connect.CodeNotFound {
			t.Fatalf("%s someone else's invitation: %v, want not_found", name, err)
		}
	}
	if _, err := bob.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: "nosuchorg"})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("accepting an invitation that does not exist: %v, want not_found", err)
	}
	if _, err := bob.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: "no/such"})); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("accepting with a malformed org_id: %v, want invalid_argument", err)
	}
	var version int64
	if err := app.pool.QueryRow(ctx, `SELECT version FROM records WHERE key = $1`, "invitation/bob/"+orgID).Scan(&version); err != nil || version != before {
		t.Fatalf("invitation version %d (%v) after refused calls, want %d", version, err, before)
	}

	// Accepting makes the membership: now the profile is shared and the
	// channels notify.
	acc, err := bob.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID}))
	if err != nil {
		t.Fatal(err)
	}
	if acc.Msg.GetWritten().GetKey() != "orgmember/"+orgID+"/bob" {
		t.Fatalf("accept wrote %v", acc.Msg.GetWritten())
	}
	if ev := untilKey(t, invitations, "invitation/bob/"+orgID); ev.GetRemoved() == nil {
		t.Fatalf("invitee's stream: %v, want the invitation's tombstone", ev)
	}
	if ev := untilKey(t, pending, "orginvitation/"+orgID+"/bob"); ev.GetRemoved() == nil {
		t.Fatalf("owner's stream: %v, want the invitation's tombstone", ev)
	}
	if code := subscribeCode(t, ctx, mallory.client, "user/bob"); code != connect.CodeUnknown {
		t.Fatalf("reading a member's profile: %v, want it admitted", code)
	}
	if _, err := mallory.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "welcome"})); err != nil {
		t.Fatal(err)
	}
	if n := channelCreatedJobs(t, ctx, app, "bob"); n != 1 {
		t.Fatalf("%d channel_created notifications for the member, want 1", n)
	}
	mine, err = bob.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
	if err != nil || len(mine.Msg.GetOrgs()) != 1 || mine.Msg.GetOrgs()[0].GetRole() != orgv1.Role_ROLE_MEMBER {
		t.Fatalf("member's organizations: %v, %v", mine, err)
	}
	if _, err := bob.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("accepting twice: %v, want not_found", err)
	}
	if _, err := mallory.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "bob", Role: orgv1.Role_ROLE_MEMBER})); codeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("inviting a member: %v, want already_exists", err)
	}
	// Only managers invite.
	if _, err := bob.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "carol", Role: orgv1.Role_ROLE_MEMBER})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a member inviting: %v, want permission_denied", err)
	}
}

// Declining, or the organization withdrawing the invitation, leaves no
// trace of a membership; a service principal adds members directly and
// takes a pending invitation along.
func TestInvitationDeclineWithdrawAndServiceImport(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	token := configWithServices(t, &cfg, "")
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	carol := chatLogin(t, app.url, "carol")
	dave := chatLogin(t, app.url, "dave")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	invite := func(user string) {
		t.Helper()
		if _, err := alice.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: user, Role: orgv1.Role_ROLE_MEMBER})); err != nil {
			t.Fatalf("invite %s: %v", user, err)
		}
	}
	live := func(key string) bool {
		t.Helper()
		var n int
		if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key = $1 AND NOT deleted`, key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// Carol declines: both records of the invitation are tombstones, and
	// there is nothing left to answer.
	invite("carol")
	dec, err := carol.org.DeclineInvitation(ctx, connect.NewRequest(&orgv1.DeclineInvitationRequest{OrgId: orgID}))
	if err != nil {
		t.Fatal(err)
	}
	if k := dec.Msg.GetWritten().GetKey(); k != "invitation/carol/"+orgID {
		t.Fatalf("decline wrote %q, want the invitee's own invitation", k)
	}
	for _, k := range []string{"invitation/carol/" + orgID, "orginvitation/" + orgID + "/carol", "orgmember/" + orgID + "/carol"} {
		if live(k) {
			t.Fatalf("%s is live after declining", k)
		}
	}
	if _, err := carol.org.DeclineInvitation(ctx, connect.NewRequest(&orgv1.DeclineInvitationRequest{OrgId: orgID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("declining twice: %v, want not_found", err)
	}
	if _, err := carol.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("accepting a declined invitation: %v, want not_found", err)
	}

	// The owner withdraws dave's invitation with RemoveMember.
	invite("dave")
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "dave"})); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	if _, err := dave.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("accepting a withdrawn invitation: %v, want not_found", err)
	}
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "dave"})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("removing someone neither member nor invited: %v, want not_found", err)
	}

	// A service principal adds dave directly, withdrawing the invitation
	// pending again.
	invite("dave")
	svc := newClient(app.url)
	svc.token = token
	svcOrg := orgv1connect.NewOrgServiceClient(h2c(), app.url, connect.WithInterceptors(bearerInterceptor{token: &svc.token}))
	res, err := svcOrg.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "dave", Role: orgv1.Role_ROLE_MEMBER}))
	if err != nil {
		t.Fatalf("service adds: %v", err)
	}
	if res.Msg.GetInvited() || !strings.HasPrefix(res.Msg.GetWritten().GetKey(), "orgmember/") {
		t.Fatalf("service AddMember = %v, want a membership", res.Msg)
	}
	if live("invitation/dave/"+orgID) || live("orginvitation/"+orgID+"/dave") {
		t.Fatal("the invitation is still pending after the service added the member")
	}
	mine, err := dave.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
	if err != nil || len(mine.Msg.GetOrgs()) != 1 {
		t.Fatalf("dave's organizations after the import: %v, %v", mine, err)
	}
	if _, err := svcOrg.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "dave", Role: orgv1.Role_ROLE_MEMBER})); codeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("service adding a member again: %v, want already_exists", err)
	}
}
