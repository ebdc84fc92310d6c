package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	notifyv1 "github.com/sluicehq/sluice/gen/sluice/notify/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/internal/testenv"
)

type chatClient struct {
	*client
	org   orgv1connect.OrgServiceClient
	chan_ channelv1connect.ChannelServiceClient
	msg   messagev1connect.MessageServiceClient
}

func chatLogin(t *testing.T, base, name string) *chatClient {
	c := login(t, base, name)
	opt := connect.WithInterceptors(bearerInterceptor{token: &c.token})
	hc := h2c()
	return &chatClient{client: c,
		org:   orgv1connect.NewOrgServiceClient(hc, base, opt),
		chan_: channelv1connect.NewChannelServiceClient(hc, base, opt),
		msg:   messagev1connect.NewMessageServiceClient(hc, base, opt)}
}

func textOf(t *testing.T, r *syncv1.Record) string {
	t.Helper()
	m := &messagev1.Message{}
	if err := r.GetPayload().UnmarshalTo(m); err != nil {
		t.Fatalf("message payload of %s: %v", r.GetKey(), err)
	}
	return m.GetText()
}

// The messenger in miniature: an owner creates an organization and a
// channel, members talk live; a removed member's channel stream is revoked
// and receives none of the later messages.
func TestChannelMessagingAndLiveRemoval(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	carol := chatLogin(t, app.url, "carol")

	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	for _, u := range []string{"bob", "carol"} {
		admit(t, ctx, app.url, alice.org, orgID, u, orgv1.Role_ROLE_MEMBER)
	}
	// A member cannot add members; a non-member cannot even see the org.
	if _, err := bob.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "dave", Role: orgv1.Role_ROLE_MEMBER})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("member adding: %v", err)
	}
	dave := chatLogin(t, app.url, "dave")
	if _, err := dave.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "dave", Role: orgv1.Role_ROLE_OWNER})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("outsider adding: %v", err)
	}

	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	for _, u := range []*chatClient{bob, carol} {
		if _, err := u.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dave.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("outsider joining: %v", err)
	}

	scope := &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + chID}}}
	bobStream := bob.subscribe(t, scope)
	catchUp := bobStream.untilSynced(t)
	var system string
	for _, ev := range catchUp {
		if r := ev.GetRecord().GetRecord(); r != nil && len(r.GetKey()) > 8 && r.GetKey()[:8] == "message/" {
			system = textOf(t, r)
		}
	}
	if system != "alice created #general" {
		t.Fatalf("catch-up = %d events, system message %q", len(catchUp), system)
	}
	carolStream := carol.subscribe(t, scope)
	carolStream.untilSynced(t)

	post := func(u *chatClient, text string) string {
		t.Helper()
		res, err := u.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: text}))
		if err != nil {
			t.Fatalf("post %q: %v", text, err)
		}
		return res.Msg.GetWritten().GetKey()
	}
	first := post(alice, "hello")
	for _, s := range []*events{bobStream, carolStream} {
		if r := s.next(t, 10*time.Second).GetRecord().GetRecord(); textOf(t, r) != "hello" {
			t.Fatalf("live message = %v", r)
		}
	}

	// Only the author edits; a member may not delete another's message,
	// the owner may.
	if _, err := bob.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: first, Text: "hacked"})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("edit by another member: %v", err)
	}
	if _, err := alice.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: first, Text: "hello!"})); err != nil {
		t.Fatal(err)
	}
	if r := bobStream.next(t, 10*time.Second).GetRecord().GetRecord(); textOf(t, r) != "hello!" || r.GetVersion() != 2 {
		t.Fatalf("edit seen as %v", r)
	}
	carolStream.next(t, 10*time.Second)
	bobsKey := post(bob, "bob here")
	bobStream.next(t, 10*time.Second)
	carolStream.next(t, 10*time.Second)
	if _, err := carol.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: bobsKey})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("delete by another member: %v", err)
	}
	if _, err := alice.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: bobsKey})); err != nil {
		t.Fatalf("owner delete: %v", err)
	}
	if rm := bobStream.next(t, 10*time.Second).GetRemoved(); rm.GetKey() != bobsKey {
		t.Fatalf("want tombstone of %s, got %v", bobsKey, rm)
	}
	carolStream.next(t, 10*time.Second)

	// The owner removes carol from the organization: her channel stream is
	// revoked in order, and no later message reaches her.
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	for {
		ev := carolStream.next(t, 10*time.Second)
		if ev.GetRevoked() != nil {
			if ev.GetRevoked().GetScope() != "channel/"+chID {
				t.Fatalf("revoked %v", ev.GetRevoked())
			}
			break
		}
		// Only the membership tombstone may come before the revocation.
		if rm := ev.GetRemoved(); rm == nil || rm.GetKey() != "chanmember/"+chID+"/carol" {
			t.Fatalf("before revoked: %v", ev)
		}
	}
	post(alice, "after carol left")
	// Bob sees carol's membership tombstone, then the new message.
	if rm := bobStream.next(t, 10*time.Second).GetRemoved(); rm.GetKey() != "chanmember/"+chID+"/carol" {
		t.Fatalf("bob: want carol's membership tombstone, got %v", rm)
	}
	if r := bobStream.next(t, 10*time.Second).GetRecord().GetRecord(); textOf(t, r) != "after carol left" {
		t.Fatalf("bob: %v", r)
	}
	select {
	case ev, ok := <-carolStream.ch:
		if ok && ev.GetHeartbeat() == nil {
			t.Fatalf("carol got %v after revoked", ev)
		}
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := carol.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "still here?"})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("removed member posting: %v", err)
	}
	reopen, err := carol.sync.Subscribe(ctx, connect.NewRequest(scope))
	if err == nil {
		for reopen.Receive() {
		}
		err = reopen.Err()
	}
	if codeOf(err) != connect.CodeNotFound {
		t.Fatalf("removed member re-subscribing: %v", err)
	}

	// The last owner stays.
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "alice"})); codeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("last owner leaving: %v", err)
	}
	if _, err := alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: orgID, UserId: "alice", Role: orgv1.Role_ROLE_MEMBER})); codeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("last owner demoting themselves: %v", err)
	}

	// Archived channels take no more messages.
	if _, err := bob.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chID})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("member archiving: %v", err)
	}
	if _, err := alice.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "x"})); codeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("post to archived: %v", err)
	}
}

// History pages through a channel's messages newest first, with
// before_seq cursors, members only.
func TestMessageHistoryPagination(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: "log"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	for i := 1; i <= 7; i++ {
		if _, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	var texts []string
	var before int64
	pages := 0
	for {
		res, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID, BeforeSeq: before, Limit: 3}))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range res.Msg.GetMessages() {
			texts = append(texts, textOf(t, r))
		}
		before = res.Msg.GetNextBeforeSeq()
		if res.Msg.GetHasMore() != (before != 0) {
			t.Fatalf("has_more %v with next_before_seq %d", res.Msg.GetHasMore(), before)
		}
		if before == 0 {
			break
		}
	}
	if fmt.Sprint(texts) != "[7 6 5 4 3 2 1 alice created #log]" || pages != 3 {
		t.Fatalf("history = %v in %d pages", texts, pages)
	}
	if _, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID, Limit: 501})); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("limit 501: %v", err)
	}
	bob := chatLogin(t, app.url, "bob")
	if _, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("outsider history: %v", err)
	}
}

// Typing is a signal to the channel's streams on every instance, with the
// posting rule, and nothing is stored.
func TestTypingIsEphemeral(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	a := startApp(t, cfg)
	b := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, a.url, "alice")
	bob := chatLogin(t, b.url, "bob")
	dave := chatLogin(t, a.url, "dave")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	admit(t, ctx, a.url, alice.org, orgID, "bob", orgv1.Role_ROLE_MEMBER)
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	s := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + chID}}})
	s.untilSynced(t)
	// Typing would be stored in the channel's scope, or attributed to its
	// sender; the worker's notification jobs write elsewhere meanwhile.
	const stored = `SELECT count(*) FROM changes WHERE scope = $1 OR actor IN ('bob', 'dave')`
	var before int
	if err := a.pool.QueryRow(ctx, stored, "channel/"+chID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	for {
		ev := s.next(t, 10*time.Second)
		if e := ev.GetEphemeral(); e != nil {
			if e.GetKind() != "typing" || e.GetFrom() != "bob" || e.GetScope() != "channel/"+chID {
				t.Fatalf("typing event = %v", e)
			}
			break
		}
		// bob's join may still be arriving
		if ev.GetRecord() == nil {
			t.Fatalf("unexpected %v", ev)
		}
	}
	if _, err := dave.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: chID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("outsider typing: %v", err)
	}
	var after int
	if err := a.pool.QueryRow(ctx, stored, "channel/"+chID).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("typing wrote %d changes", after-before)
	}
}

// A mention notifies mentioned members: a notification record on their
// stream and one e-mail, exactly once per idempotency key; mentioned
// non-members get nothing.
func TestMentionNotifies(t *testing.T) {
	t.Parallel()
	smtp := testenv.StartSMTP(t)
	cfg := baseConfig(t)
	cfg.SMTPAddr, cfg.MailDomain = smtp.Addr(), "example.test"
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	for _, u := range []string{"bob", "carol"} {
		admit(t, ctx, app.url, alice.org, orgID, u, orgv1.Role_ROLE_MEMBER)
	}
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	notes := bob.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "notifications/bob"}}})
	// The channel_created notification may be written (by a job) before
	// the stream opens: then it is in the catch-up.
	caughtUp := notes.untilSynced(t)

	// carol is in the organization but not the channel: no notification.
	for i := 0; i < 2; i++ {
		req := connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "lunch, @bob and @carol?"})
		req.Header().Set("Idempotency-Key", "lunch-1")
		if _, err := alice.msg.PostMessage(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	// bob is told about the new channel and about the mention.
	kinds := map[string]int{}
	for kinds["mention"] == 0 || kinds["channel_created"] == 0 {
		var ev *syncv1.SubscribeResponse
		if len(caughtUp) > 0 {
			ev, caughtUp = caughtUp[0], caughtUp[1:]
		} else {
			ev = notes.next(t, 15*time.Second)
		}
		r := ev.GetRecord().GetRecord()
		if r == nil || r.GetScope() != "notifications/bob" {
			t.Fatalf("notification = %v", ev)
		}
		n := &notifyv1.Notification{}
		if err := r.GetPayload().UnmarshalTo(n); err != nil {
			t.Fatal(err)
		}
		kinds[map[notifyv1.Notification_Kind]string{
			notifyv1.Notification_KIND_MENTION: "mention", notifyv1.Notification_KIND_CHANNEL_CREATED: "channel_created",
		}[n.GetKind()]]++
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mails, _ := smtp.Mails()
		if len(mails) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no e-mail")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // would a second job or a carol job arrive?
	mails, _ := smtp.Mails()
	if len(mails) != 1 || len(mails[0].To) != 1 || mails[0].To[0] != "bob@example.test" {
		t.Fatalf("mails = %+v, want exactly one to bob", mails)
	}
	var notifications, jobs int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key LIKE 'notification/%' AND payload->>'kind' = 'KIND_MENTION'`).Scan(&notifications); err != nil {
		t.Fatal(err)
	}
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE kind = 'notify.mention'`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if notifications != 1 || jobs != 1 {
		t.Fatalf("%d mention notifications and %d mention jobs, want 1 and 1", notifications, jobs)
	}
	// Only bob reads bob's notifications.
	s, err := alice.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "notifications/bob"}}}))
	if err == nil {
		for s.Receive() {
		}
		err = s.Err()
	}
	if codeOf(err) != connect.CodeNotFound {
		t.Fatalf("alice reading bob's notifications: %v", err)
	}
}

// Presence: who has the channel open, across instances; join and leave
// arrive live and a new stream starts with who is online.
func TestPresence(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	a := startApp(t, cfg)
	b := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, a.url, "alice")
	bob := chatLogin(t, b.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	admit(t, ctx, a.url, alice.org, o.Msg.GetOrg().GetId(), "bob", orgv1.Role_ROLE_MEMBER)
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	scope := &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + chID}}}
	nextSignal := func(e *events) *syncv1.EphemeralEvent {
		t.Helper()
		for {
			ev := e.nextAny(t, 10*time.Second)
			if s := ev.GetEphemeral(); s != nil {
				return s
			}
		}
	}

	onA := alice.subscribe(t, scope)
	onA.untilSynced(t)
	if s := nextSignal(onA); s.GetKind() != "presence.here" || s.GetFrom() != "alice" {
		t.Fatalf("alice's snapshot = %v", s)
	}
	onB := bob.subscribe(t, scope)
	onB.untilSynced(t)
	here := map[string]bool{}
	for len(here) < 2 {
		s := nextSignal(onB)
		if s.GetKind() != "presence.here" {
			t.Fatalf("bob's snapshot: %v", s)
		}
		here[s.GetFrom()] = true
	}
	if !here["alice"] || !here["bob"] {
		t.Fatalf("online = %v", here)
	}
	if s := nextSignal(onA); s.GetKind() != "presence.join" || s.GetFrom() != "bob" {
		t.Fatalf("alice saw %v, want bob's join", s)
	}
	onB.cancel()
	if s := nextSignal(onA); s.GetKind() != "presence.leave" || s.GetFrom() != "bob" {
		t.Fatalf("alice saw %v, want bob's leave", s)
	}
}

// Guests enter only the channels of their teams.
func TestTeamsAndGuests(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	carol := chatLogin(t, app.url, "carol")
	dave := chatLogin(t, app.url, "dave")
	bob := chatLogin(t, app.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	for u, r := range map[string]orgv1.Role{"bob": orgv1.Role_ROLE_MEMBER, "carol": orgv1.Role_ROLE_GUEST, "dave": orgv1.Role_ROLE_GUEST} {
		admit(t, ctx, app.url, alice.org, orgID, u, r)
	}
	tm, err := alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: orgID, Name: "design"}))
	if err != nil {
		t.Fatal(err)
	}
	teamID := tm.Msg.GetTeam().GetId()
	if _, err := bob.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: orgID, Name: "x"})); codeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("member creating a team: %v", err)
	}
	if _, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: "mallory"})); codeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("team member outside the organization: %v", err)
	}
	teamCh, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "design", TeamId: teamID}))
	if err != nil {
		t.Fatal(err)
	}
	open, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	join := func(c *chatClient, ch string) error {
		_, err := c.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: ch}))
		return err
	}
	if err := join(carol, teamCh.Msg.GetChannel().GetId()); err != nil {
		t.Fatalf("guest in the team joining its channel: %v", err)
	}
	for name, err := range map[string]error{
		"guest outside the team":        join(dave, teamCh.Msg.GetChannel().GetId()),
		"member outside the team":       join(bob, teamCh.Msg.GetChannel().GetId()),
		"guest joining an open channel": join(carol, open.Msg.GetChannel().GetId()),
		"guest creating an open channel": func() error {
			_, err := carol.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "x"}))
			return err
		}(),
	} {
		if codeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s: %v, want permission_denied", name, err)
		}
	}
	if err := join(bob, open.Msg.GetChannel().GetId()); err != nil {
		t.Fatalf("member joining an open channel: %v", err)
	}

	// Profiles: a guest reads only people who share one of their teams.
	readProfile := func(c *chatClient, user string) error {
		s, err := c.sync.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/" + user}}}))
		if err != nil {
			return err
		}
		defer s.Close()
		for s.Receive() {
			if s.Msg().GetSynced() != nil {
				return nil
			}
		}
		return s.Err()
	}
	if err := readProfile(carol, "bob"); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("guest reading a contact outside their teams: %v, want not_found", err)
	}
	if err := readProfile(bob, "carol"); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("member reading a guest outside their teams: %v, want not_found", err)
	}
	if _, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: "alice"})); err != nil {
		t.Fatal(err)
	}
	if err := readProfile(carol, "alice"); err != nil {
		t.Fatalf("guest reading a teammate: %v", err)
	}
	if err := readProfile(bob, "alice"); err != nil {
		t.Fatalf("member reading a member: %v", err)
	}
	// Live: carol's open stream on alice's profile is revoked when carol
	// leaves the team.
	prof := carol.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	prof.untilSynced(t)
	if _, err := carol.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	if ev := prof.next(t, 10*time.Second); ev.GetRevoked().GetKey() != "user/alice" {
		t.Fatalf("after leaving the team: %v, want revoked user/alice", ev)
	}
	if _, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	// Leaving the organization takes the team membership along.
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "carol"})); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key LIKE 'teammember/%/carol' AND NOT deleted`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d team memberships left (%v)", left, err)
	}
}

// Leaving a channel revokes the leaver's stream on it; AccessService.Check
// answers from the same policies and explains refusals.
func TestLeaveChannelAndCheck(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	admit(t, ctx, app.url, alice.org, orgID, "bob", orgv1.Role_ROLE_MEMBER)
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	check := func(who *chatClient) []*accessv1.Answer {
		t.Helper()
		res, err := who.access.Check(ctx, connect.NewRequest(&accessv1.CheckRequest{Questions: []*accessv1.Question{
			{Procedure: messagev1connect.MessageServicePostMessageProcedure, Params: map[string]string{"channel_id": chID}},
			{Procedure: channelv1connect.ChannelServiceArchiveChannelProcedure, Params: map[string]string{"channel_id": chID}},
			{Procedure: "/sluice.sync.v1.SyncService/Subscribe", Key: "channel/" + chID},
		}}))
		if err != nil {
			t.Fatal(err)
		}
		return res.Msg.GetAnswers()
	}
	a := check(bob)
	if !a[0].GetAllowed() || a[1].GetAllowed() || a[1].GetRule() != "channel-archiver" || !a[2].GetAllowed() {
		t.Fatalf("bob's answers = %v", a)
	}
	s := bob.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + chID}}})
	s.untilSynced(t)
	if _, err := bob.chan_.LeaveChannel(ctx, connect.NewRequest(&channelv1.LeaveChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	for {
		ev := s.next(t, 10*time.Second)
		if ev.GetRevoked() != nil {
			break
		}
		if ev.GetRemoved().GetKey() != "chanmember/"+chID+"/bob" {
			t.Fatalf("before revoked: %v", ev)
		}
	}
	a = check(bob)
	if a[0].GetAllowed() || a[0].GetReason() != "not found" || a[2].GetAllowed() {
		t.Fatalf("after leaving: %v", a)
	}
	if _, err := bob.chan_.LeaveChannel(ctx, connect.NewRequest(&channelv1.LeaveChannelRequest{ChannelId: chID})); codeOf(err) != connect.CodeNotFound {
		t.Fatalf("leaving again: %v", err)
	}
}
