package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	adminv1 "github.com/sluicehq/sluice/gen/sluice/admin/v1"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/syncsvc"
)

// a returns n bytes of "a".
func a(n int) string { return strings.Repeat("a", n) }

// e returns n characters of "é" (2n bytes): limits in characters are not
// limits in bytes.
func e(n int) string { return strings.Repeat("é", n) }

// padTo returns msg with an unknown field appended so that it encodes to
// exactly size bytes.
func padTo(t *testing.T, msg proto.Message, size int) proto.Message {
	t.Helper()
	msg = proto.Clone(msg)
	base := proto.Size(msg)
	for n := size - base - 4; n > 0; n-- {
		pad := protowire.AppendBytes(protowire.AppendTag(nil, 1000, protowire.BytesType), make([]byte, n))
		if base+len(pad) == size {
			msg.ProtoReflect().SetUnknown(pad)
			if got := proto.Size(msg); got != size {
				t.Fatalf("padded to %d bytes, want %d", got, size)
			}
			return msg
		}
	}
	t.Fatalf("cannot pad %T to %d bytes", msg, size)
	return nil
}

// limitCase is one limit: a call at the limit, which is accepted (succeeds
// when ok, else fails with anything but invalid_argument), and one past it,
// which is invalid_argument naming field.
type limitCase struct {
	name  string
	field string
	ok    bool
	call  func(ctx context.Context, past bool) error
}

// Every length, size and count limit of the API: at the limit the request
// is accepted, one past it is invalid_argument naming the field. (The
// request size limit answers resource_exhausted.) Limits in characters
// are tested with two-byte characters.
func TestLimitBoundaries(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	token := configWithServices(t, &cfg, "")
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	admin := login(t, app.url, "admin")
	orgID, chID := chatOrg(t, ctx, alice, bob)
	team, err := alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: orgID, Name: "core"}))
	if err != nil {
		t.Fatal(err)
	}
	teamID := team.Msg.GetTeam().GetId()
	posted, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "hi"}))
	if err != nil {
		t.Fatal(err)
	}
	msgKey := posted.Msg.GetWritten().GetKey()
	service := newClient(app.url)
	service.token = token
	adminSvc := adminv1connect.NewAdminServiceClient(h2c(), app.url, connect.WithInterceptors(bearerInterceptor{token: &service.token}))
	// The user with the longest id cannot log in to accept an invitation:
	// a service principal adds them directly.
	orgSvc := orgv1connect.NewOrgServiceClient(h2c(), app.url, connect.WithInterceptors(bearerInterceptor{token: &service.token}))

	// n picks the size at or one past the limit.
	n := func(limit int, past bool) int {
		if past {
			return limit + 1
		}
		return limit
	}
	// chanID is a channel id of the organization, of exactly size bytes.
	chanID := func(size int) string { return orgID + "." + a(size-len(orgID)-1) }
	// msgKeyOf is a message key of the channel, of exactly size bytes.
	msgKeyOf := func(size int) string { prefix := "message/" + chID + "/"; return prefix + a(size-len(prefix)) }

	subscribe := func(ctx context.Context, req *syncv1.SubscribeRequest) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		s, err := alice.sync.Subscribe(ctx, connect.NewRequest(req))
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
	records := func(count int, key string) []*syncv1.RecordTarget {
		out := make([]*syncv1.RecordTarget, count)
		for i := range out {
			out[i] = &syncv1.RecordTarget{Key: key}
		}
		return out
	}
	scopes := func(count int) []*syncv1.ScopeTarget {
		out := make([]*syncv1.ScopeTarget, count)
		for i := range out {
			out[i] = &syncv1.ScopeTarget{Scope: "channel/" + chID}
		}
		return out
	}
	questions := func(count int) []*accessv1.Question {
		out := make([]*accessv1.Question, count)
		for i := range out {
			out[i] = &accessv1.Question{Procedure: "/sluice.color.v1.ColorService/SetColor", Params: map[string]string{"color": "red"}}
		}
		return out
	}
	check := func(ctx context.Context, q ...*accessv1.Question) error {
		_, err := alice.access.Check(ctx, connect.NewRequest(&accessv1.CheckRequest{Questions: q}))
		return err
	}
	params := func(count int) map[string]string {
		out := map[string]string{}
		for i := range count {
			out[string(rune('a'+i))] = "v"
		}
		return out
	}

	// The cases run in order: "AddMember user_id" adds the member with the
	// longest id (a(128)) that the team and role cases then act on.
	cases := []limitCase{
		// AuthService
		{"Login username", "username", false, func(ctx context.Context, past bool) error {
			_, err := newClient(app.url).auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: a(n(128, past)), Password: "x"}))
			return err
		}},
		{"Login password", "password", false, func(ctx context.Context, past bool) error {
			_, err := newClient(app.url).auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "pwlimit", Password: a(n(1024, past))}))
			return err
		}},
		// UserService
		{"SetAvatarUrl avatar_url", "avatar_url", true, func(ctx context.Context, past bool) error {
			u := "https://example.com/"
			_, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: u + a(n(2048, past)-len(u))}))
			return err
		}},
		{"SetDisplayName display_name", "display_name", true, func(ctx context.Context, past bool) error {
			_, err := alice.user.SetDisplayName(ctx, connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: e(n(64, past))}))
			return err
		}},
		// SyncService
		{"Subscribe records", "records", true, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Records: records(n(syncsvc.MaxTargets, past), "user/alice")})
		}},
		{"Subscribe scopes", "scopes", true, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Scopes: scopes(n(syncsvc.MaxTargets, past))})
		}},
		{"Subscribe records and scopes together", "records", true, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Records: records(n(syncsvc.MaxTargets/2, past), "user/alice"), Scopes: scopes(syncsvc.MaxTargets / 2)})
		}},
		{"Subscribe records.key", "records.key", false, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Records: records(1, "user/"+a(n(256, past)-5))})
		}},
		{"Subscribe scopes.scope", "scopes.scope", false, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/" + a(n(256, past)-5)}}})
		}},
		{"Subscribe scopes.limit", "scopes.limit", true, func(ctx context.Context, past bool) error {
			return subscribe(ctx, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/" + chID, Limit: int32(n(1000, past))}}})
		}},
		{"List scope", "scope", false, func(ctx context.Context, past bool) error {
			_, err := alice.sync.List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: "user/" + a(n(256, past)-5)}))
			return err
		}},
		{"List limit", "limit", true, func(ctx context.Context, past bool) error {
			_, err := alice.sync.List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: "channel/" + chID, Limit: int32(n(500, past))}))
			return err
		}},
		{"Get keys", "keys", true, func(ctx context.Context, past bool) error {
			keys := make([]string, n(syncsvc.MaxGetKeys, past))
			for i := range keys {
				keys[i] = "user/alice"
			}
			_, err := alice.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: keys}))
			return err
		}},
		{"Get key length", "keys[0]", true, func(ctx context.Context, past bool) error {
			_, err := alice.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: []string{"user/" + a(n(256, past)-5)}}))
			return err
		}},
		// AccessService
		{"Check questions", "questions", true, func(ctx context.Context, past bool) error {
			return check(ctx, questions(n(access.MaxQuestions, past))...)
		}},
		{"Watch questions", "questions", true, func(ctx context.Context, past bool) error {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			w, err := alice.access.Watch(ctx, connect.NewRequest(&accessv1.WatchRequest{Questions: questions(n(access.MaxQuestions, past))}))
			if err != nil {
				return err
			}
			defer w.Close()
			if w.Receive() {
				return nil
			}
			return w.Err()
		}},
		{"Check questions.procedure", "questions.procedure", true, func(ctx context.Context, past bool) error {
			return check(ctx, &accessv1.Question{Procedure: "/" + a(n(256, past)-1)})
		}},
		{"Check questions.key", "questions.key", true, func(ctx context.Context, past bool) error {
			return check(ctx, &accessv1.Question{Procedure: "/sluice.sync.v1.SyncService/Subscribe", Key: "user/" + a(n(256, past)-5)})
		}},
		{"Check questions.params entries", "questions.params", true, func(ctx context.Context, past bool) error {
			return check(ctx, &accessv1.Question{Procedure: "/sluice.color.v1.ColorService/SetColor", Params: params(n(16, past))})
		}},
		{"Check questions.params key", "questions.params", true, func(ctx context.Context, past bool) error {
			return check(ctx, &accessv1.Question{Procedure: "/sluice.color.v1.ColorService/SetColor", Params: map[string]string{a(n(64, past)): "v"}})
		}},
		{"Check questions.params value", "questions.params", true, func(ctx context.Context, past bool) error {
			return check(ctx, &accessv1.Question{Procedure: "/sluice.color.v1.ColorService/SetColor", Params: map[string]string{"color": a(n(256, past))}})
		}},
		// ColorService and AdminService
		{"SetPermission user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := admin.color.SetPermission(ctx, connect.NewRequest(&colorv1.SetPermissionRequest{UserId: a(n(128, past)), Color: colorv1.Color_COLOR_RED, Allowed: true}))
			return err
		}},
		{"RevokeUserSessions user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := adminSvc.RevokeUserSessions(ctx, connect.NewRequest(&adminv1.RevokeUserSessionsRequest{UserId: a(n(128, past))}))
			return err
		}},
		// OrgService
		{"CreateOrg name", "name", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: e(n(100, past))}))
			return err
		}},
		{"AddMember org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: a(n(64, past)), UserId: "carol", Role: orgv1.Role_ROLE_MEMBER}))
			return err
		}},
		{"AddMember user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := orgSvc.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: a(n(128, past)), Role: orgv1.Role_ROLE_MEMBER}))
			return err
		}},
		{"CreateTeam org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: a(n(64, past)), Name: "t"}))
			return err
		}},
		{"CreateTeam name", "name", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: orgID, Name: e(n(80, past))}))
			return err
		}},
		{"AddTeamMember org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: a(n(64, past)), TeamId: teamID, UserId: "bob"}))
			return err
		}},
		{"AddTeamMember team_id", "team_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: a(n(64, past)), UserId: "bob"}))
			return err
		}},
		{"AddTeamMember user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.AddTeamMember(ctx, connect.NewRequest(&orgv1.AddTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: a(n(128, past))}))
			return err
		}},
		{"RemoveTeamMember org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: a(n(64, past)), TeamId: teamID, UserId: "bob"}))
			return err
		}},
		{"RemoveTeamMember team_id", "team_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: orgID, TeamId: a(n(64, past)), UserId: "bob"}))
			return err
		}},
		{"RemoveTeamMember user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.RemoveTeamMember(ctx, connect.NewRequest(&orgv1.RemoveTeamMemberRequest{OrgId: orgID, TeamId: teamID, UserId: a(n(128, past))}))
			return err
		}},
		{"ChangeRole org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: a(n(64, past)), UserId: "bob", Role: orgv1.Role_ROLE_ADMIN}))
			return err
		}},
		{"ChangeRole user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.ChangeRole(ctx, connect.NewRequest(&orgv1.ChangeRoleRequest{OrgId: orgID, UserId: a(n(128, past)), Role: orgv1.Role_ROLE_ADMIN}))
			return err
		}},
		{"RemoveMember org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: a(n(64, past)), UserId: "bob"}))
			return err
		}},
		{"RemoveMember user_id", "user_id", true, func(ctx context.Context, past bool) error {
			_, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: a(n(128, past))}))
			return err
		}},
		// ChannelService
		{"ListChannels org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: a(n(64, past))}))
			return err
		}},
		{"CreateChannel org_id", "org_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: a(n(64, past)), Name: "c"}))
			return err
		}},
		{"CreateChannel name", "name", true, func(ctx context.Context, past bool) error {
			_, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: e(n(80, past))}))
			return err
		}},
		{"CreateChannel team_id", "team_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "c", TeamId: a(n(64, past))}))
			return err
		}},
		{"JoinChannel channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chanID(n(130, past))}))
			return err
		}},
		{"LeaveChannel channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := bob.chan_.LeaveChannel(ctx, connect.NewRequest(&channelv1.LeaveChannelRequest{ChannelId: chanID(n(130, past))}))
			return err
		}},
		{"ArchiveChannel channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := alice.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chanID(n(130, past))}))
			return err
		}},
		// MessageService
		{"PostMessage text", "text", true, func(ctx context.Context, past bool) error {
			_, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: e(n(4000, past))}))
			return err
		}},
		{"PostMessage channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chanID(n(130, past)), Text: "x"}))
			return err
		}},
		{"EditMessage text", "text", true, func(ctx context.Context, past bool) error {
			_, err := alice.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: msgKey, Text: e(n(4000, past))}))
			return err
		}},
		{"EditMessage key", "key", false, func(ctx context.Context, past bool) error {
			_, err := alice.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: msgKeyOf(n(200, past)), Text: "x"}))
			return err
		}},
		{"DeleteMessage key", "key", false, func(ctx context.Context, past bool) error {
			_, err := alice.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: msgKeyOf(n(200, past))}))
			return err
		}},
		{"ListMessages limit", "limit", true, func(ctx context.Context, past bool) error {
			_, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID, Limit: int32(n(syncsvc.MaxListLimit, past))}))
			return err
		}},
		{"ListMessages channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chanID(n(130, past))}))
			return err
		}},
		{"SendTyping channel_id", "channel_id", false, func(ctx context.Context, past bool) error {
			_, err := bob.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: chanID(n(130, past))}))
			return err
		}},
		// Every mutating call: the Idempotency-Key header.
		{"Idempotency-Key", edge.IdempotencyHeader, true, func(ctx context.Context, past bool) error {
			req := connect.NewRequest(&userv1.SetDisplayNameRequest{DisplayName: "Alice"})
			req.Header().Set(edge.IdempotencyHeader, a(n(128, past)))
			_, err := alice.user.SetDisplayName(ctx, req)
			return err
		}},
	}
	for _, lc := range cases {
		err := lc.call(ctx, false)
		switch {
		case lc.ok && err != nil:
			t.Errorf("%s at the limit: %v, want success", lc.name, err)
		case codeOf(err) == connect.CodeInvalidArgument:
			t.Errorf("%s at the limit: %v, want accepted", lc.name, err)
		}
		err = lc.call(ctx, true)
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s past the limit: %v, want invalid_argument", lc.name, err)
			continue
		}
		if f := fieldViolations(t, err); len(f) != 1 || f[0] != lc.field {
			t.Errorf("%s past the limit: field violations %v, want [%s]", lc.name, f, lc.field)
		}
	}

	// Lower bounds: at least one target, key or question.
	if err := subscribe(ctx, &syncv1.SubscribeRequest{}); codeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("subscribe to nothing: %v", err)
	}
	if _, err := alice.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{})); codeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("get nothing: %v", err)
	}
	if err := check(ctx); codeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("check nothing: %v", err)
	}

	// The request size limit (edge.MaxRequestBytes), unary and streaming:
	// resource_exhausted past it, before decoding.
	for _, size := range []int{edge.MaxRequestBytes, edge.MaxRequestBytes + 1} {
		req := padTo(t, &userv1.SetDisplayNameRequest{DisplayName: "Alice"}, size).(*userv1.SetDisplayNameRequest)
		_, err := alice.user.SetDisplayName(ctx, connect.NewRequest(req))
		if size == edge.MaxRequestBytes && err != nil {
			t.Errorf("a %d-byte request: %v", size, err)
		}
		if size > edge.MaxRequestBytes && codeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("a %d-byte request: %v, want resource_exhausted", size, err)
		}
		sub := padTo(t, &syncv1.SubscribeRequest{Records: records(1, "user/alice")}, size).(*syncv1.SubscribeRequest)
		err = subscribe(ctx, sub)
		if size == edge.MaxRequestBytes && err != nil {
			t.Errorf("a %d-byte stream request: %v", size, err)
		}
		if size > edge.MaxRequestBytes && codeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("a %d-byte stream request: %v, want resource_exhausted", size, err)
		}
	}
}
