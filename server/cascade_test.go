package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/sync/engine"
)

// cascadeOrg is an organization of alice (owner) with bob (member) and
// carol (admin), a team t with bob, a team channel of t and an
// organization-wide channel, both with bob and carol in them.
type cascadeOrg struct {
	alice, bob, carol *chatClient
	orgID, teamID     string
	teamCh, generalCh string
}

func newCascadeOrg(t *testing.T, ctx context.Context, app *testApp) cascadeOrg {
	t.Helper()
	c := cascadeOrg{alice: chatLogin(t, app.url, "alice"), bob: chatLogin(t, app.url, "bob"), carol: chatLogin(t, app.url, "carol")}
	o, err := c.alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	c.orgID = o.Msg.GetOrg().GetId()
	admit(t, ctx, app.url, c.alice.org, c.orgID, "bob", orgv1.Role_ROLE_MEMBER)
	admit(t, ctx, app.url, c.alice.org, c.orgID, "carol", orgv1.Role_ROLE_ADMIN)
	team, err := c.alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: c.orgID, Name: "core"}))
	if err != nil {
		t.Fatal(err)
	}
	c.teamID = team.Msg.GetTeam().GetId()
	if _, err := c.alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: c.orgID, TeamId: c.teamID, UserId: "bob"})); err != nil {
		t.Fatal(err)
	}
	// carol, an admin outside the team, creates the team channel (admins
	// may); bob joins it as a team member.
	tc, err := c.carol.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: c.orgID, Name: "core", TeamId: c.teamID}))
	if err != nil {
		t.Fatal(err)
	}
	c.teamCh = tc.Msg.GetChannel().GetId()
	gc, err := c.alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: c.orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	c.generalCh = gc.Msg.GetChannel().GetId()
	for _, j := range []struct {
		who *chatClient
		ch  string
	}{{c.bob, c.teamCh}, {c.bob, c.generalCh}, {c.carol, c.generalCh}} {
		if _, err := j.who.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: j.ch})); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// channelStream opens who's stream on channel ch and reads its catch-up.
func channelStream(t *testing.T, who *chatClient, ch string) *events {
	t.Helper()
	s := who.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + ch}}})
	s.untilSynced(t)
	return s
}

// expectRevoked reads s until it is revoked from channel ch: only the
// membership tombstone of user may come first.
func expectRevoked(t *testing.T, s *events, ch, user string) {
	t.Helper()
	for {
		ev := s.next(t, 10*time.Second)
		if r := ev.GetRevoked(); r != nil {
			if r.GetScope() != "channel/"+ch {
				t.Fatalf("revoked %v, want channel/%s", r, ch)
			}
			return
		}
		if rm := ev.GetRemoved(); rm == nil || rm.GetKey() != "chanmember/"+ch+"/"+user {
			t.Fatalf("before revoked: %v", ev)
		}
	}
}

// post posts text to ch as who and returns the code (CodeUnknown: posted).
func post(ctx context.Context, who *chatClient, ch, text string) connect.Code {
	_, err := who.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: ch, Text: text}))
	if err == nil {
		return connect.CodeUnknown
	}
	return codeOf(err)
}

// Leaving a team takes the user out of the team's channels in the same
// transaction: their open stream there ends with revoked, they can no
// longer post, and their other channels stay.
func TestTeamRemovalLeavesTeamChannels(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCascadeOrg(t, ctx, app)
	teamStream := channelStream(t, c.bob, c.teamCh)
	generalStream := channelStream(t, c.bob, c.generalCh)

	if _, err := c.alice.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: c.orgID, TeamId: c.teamID, UserId: "bob"})); err != nil {
		t.Fatal(err)
	}
	expectRevoked(t, teamStream, c.teamCh, "bob")
	var left int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key = $1 AND NOT deleted`, "chanmember/"+c.teamCh+"/bob").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatal("the team channel membership is left after leaving the team")
	}
	if code := post(ctx, c.bob, c.teamCh, "still here?"); code != connect.CodeNotFound {
		t.Fatalf("posting to the team channel after leaving the team: %v, want not_found", code)
	}
	// The organization-wide channel is untouched.
	if code := post(ctx, c.bob, c.generalCh, "hello"); code != connect.CodeUnknown {
		t.Fatalf("posting to #general: %v", code)
	}
	if r := generalStream.next(t, 10*time.Second).GetRecord().GetRecord(); textOf(t, r) != "hello" {
		t.Fatalf("#general stream: %v", r)
	}
	// Carol, an admin outside the team, stays in the team channel: her
	// role admits her. Removing someone not in the team is not_found.
	if code := post(ctx, c.carol, c.teamCh, "admins stay"); code != connect.CodeUnknown {
		t.Fatalf("admin posting to the team channel: %v", code)
	}
	if _, err := c.alice.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: c.orgID, TeamId: c.teamID, UserId: "bob"})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("removing a non-member from the team: %v, want not_found", err)
	}
}

// A demotion takes the user out of the channels the new role may not be
// in: a guest leaves organization-wide channels (but keeps the channels of
// their teams); an admin demoted to member leaves team channels of teams
// they are not in. Open streams end with revoked.
func TestDemotionLeavesChannels(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCascadeOrg(t, ctx, app)
	generalStream := channelStream(t, c.bob, c.generalCh)
	teamStream := channelStream(t, c.bob, c.teamCh)

	if _, err := c.alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: c.orgID, UserId: "bob", Role: orgv1.Role_ROLE_GUEST})); err != nil {
		t.Fatal(err)
	}
	expectRevoked(t, generalStream, c.generalCh, "bob")
	if code := post(ctx, c.bob, c.generalCh, "guest here"); code != connect.CodeNotFound {
		t.Fatalf("a guest posting to #general: %v, want not_found", code)
	}
	if code := post(ctx, c.bob, c.teamCh, "still in my team"); code != connect.CodeUnknown {
		t.Fatalf("a guest posting to their team's channel: %v", code)
	}
	if r := teamStream.next(t, 10*time.Second).GetRecord().GetRecord(); textOf(t, r) != "still in my team" {
		t.Fatalf("team stream: %v", r)
	}

	// Carol, admin and creator of the team channel without being in the
	// team, is demoted to member: she leaves it, and keeps #general.
	carolTeam := channelStream(t, c.carol, c.teamCh)
	if _, err := c.alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: c.orgID, UserId: "carol", Role: orgv1.Role_ROLE_MEMBER})); err != nil {
		t.Fatal(err)
	}
	expectRevoked(t, carolTeam, c.teamCh, "carol")
	if code := post(ctx, c.carol, c.generalCh, "member now"); code != connect.CodeUnknown {
		t.Fatalf("a member posting to #general: %v", code)
	}
	var left int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key IN ($1, $2) AND NOT deleted`,
		"chanmember/"+c.generalCh+"/bob", "chanmember/"+c.teamCh+"/carol").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d channel memberships the roles do not admit are left", left)
	}
}

// Defence in depth: a channel membership row that the user's standing no
// longer admits (left behind by data written before removals cascaded)
// grants neither reading nor posting.
func TestStaleChannelMembershipGrantsNothing(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCascadeOrg(t, ctx, app)
	if _, err := c.alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: c.orgID, UserId: "bob", Role: orgv1.Role_ROLE_GUEST})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: c.orgID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	// Write the stale rows behind the services' back.
	if _, err := app.store.Update(ctx, "test", func(ctx context.Context, tx *engine.Tx) error {
		for _, m := range []struct{ ch, user string }{{c.generalCh, "bob"}, {c.generalCh, "carol"}} {
			if _, err := tx.Put(ctx, "chanmember/"+m.ch+"/"+m.user, "channel/"+m.ch, &channelv1.ChannelMember{ChannelId: m.ch, UserId: m.user}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, who := range []*chatClient{c.bob, c.carol} {
		if code := subscribeCode(t, ctx, who.client, "channel/"+c.generalCh); code != connect.CodeNotFound {
			t.Fatalf("reading #general on a stale membership: %v, want not_found", code)
		}
		if code := post(ctx, who, c.generalCh, "ghost"); code != connect.CodeNotFound {
			t.Fatalf("posting on a stale membership: %v, want not_found", code)
		}
	}
	// Live: a stream admitted while the standing held is revoked when it
	// stops holding, even if the channel membership row stays.
	s := channelStream(t, c.bob, c.teamCh)
	if _, err := app.store.Update(ctx, "test", func(ctx context.Context, tx *engine.Tx) error {
		_, err := tx.Delete(ctx, "teammember/"+c.orgID+"/"+c.teamID+"/bob")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := s.next(t, 10*time.Second)
		if r := ev.GetRevoked(); r != nil {
			if r.GetScope() != "channel/"+c.teamCh {
				t.Fatalf("revoked %v", r)
			}
			break
		}
		t.Fatalf("before revoked: %v", ev)
	}
}
