package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	accessv1 "github.com/sluicehq/sluice/gen/sluice/access/v1"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

// chatOrg makes owner create an organization with members (role member)
// and a channel the members joined; it returns the org and channel ids.
func chatOrg(t *testing.T, ctx context.Context, owner *chatClient, members ...*chatClient) (orgID, chID string) {
	t.Helper()
	o, err := owner.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID = o.Msg.GetOrg().GetId()
	for _, m := range members {
		who, err := m.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := owner.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: who.Msg.GetUserId(), Role: orgv1.Role_ROLE_MEMBER})); err != nil {
			t.Fatal(err)
		}
		if _, err := m.org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); err != nil {
			t.Fatal(err)
		}
	}
	c, err := owner.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID = c.Msg.GetChannel().GetId()
	for _, m := range members {
		if _, err := m.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
			t.Fatal(err)
		}
	}
	return orgID, chID
}

// A channel's creator who was removed from the organization has no
// standing there any more: archiving is refused like for any outsider
// (not_found), and the channel stays as it was.
func TestArchiveNeedsStandingInTheOrg(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	orgID, _ := chatOrg(t, ctx, alice, bob)

	c, err := bob.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "bobs"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "bob"})); err != nil {
		t.Fatal(err)
	}
	_, err = bob.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chID}))
	if codeOf(err) != connect.CodeNotFound {
		t.Fatalf("removed creator archiving: %v, want not_found", err)
	}
	// The capability answer agrees with the enforcement.
	ans, err := bob.access.Check(ctx, connect.NewRequest(&accessv1.CheckRequest{Questions: []*accessv1.Question{
		{Procedure: channelv1connect.ChannelServiceArchiveChannelProcedure, Params: map[string]string{"channel_id": chID}},
	}}))
	if err != nil || ans.Msg.GetAnswers()[0].GetAllowed() {
		t.Fatalf("check archive after removal = %v, %v; want refused", ans, err)
	}
	list, err := alice.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgID}))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range list.Msg.GetChannels() {
		if ch.GetId() == chID && ch.GetArchived() {
			t.Fatal("the channel was archived by a removed creator")
		}
	}
	// A creator still in the organization archives their channel.
	c2, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "alices"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: c2.Msg.GetChannel().GetId()})); err != nil {
		t.Fatalf("creator archiving: %v", err)
	}
}

// An archived channel refuses editing, deleting (by the author and by a
// manager) and typing, like posting: failed_precondition, nothing written.
func TestArchivedChannelRefusesMessageChanges(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	_, chID := chatOrg(t, ctx, alice, bob)
	posted, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "before"}))
	if err != nil {
		t.Fatal(err)
	}
	key := posted.Msg.GetWritten().GetKey()
	if _, err := alice.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	// Count the channel's own changes: notification jobs write elsewhere,
	// whenever they run.
	var before int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM changes WHERE scope = $1`, "channel/"+chID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"post": func() error {
			_, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "after"}))
			return err
		},
		"edit": func() error {
			_, err := bob.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: key, Text: "changed"}))
			return err
		},
		"delete by author": func() error {
			_, err := bob.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: key}))
			return err
		},
		"delete by owner": func() error {
			_, err := alice.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: key}))
			return err
		},
		"typing": func() error {
			_, err := bob.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: chID}))
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if codeOf(err) != connect.CodeFailedPrecondition {
			t.Errorf("%s on an archived channel: %v, want failed_precondition", name, err)
			continue
		}
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Message() != "the channel is archived" {
			t.Errorf("%s: message %q", name, ce.Message())
		}
	}
	var after int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM changes WHERE scope = $1`, "channel/"+chID).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("%d changes written to an archived channel", after-before)
	}
	// Reading is still allowed.
	list, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID}))
	if err != nil || len(list.Msg.GetMessages()) != 2 {
		t.Fatalf("list archived channel = %v, %v", list, err)
	}
}

// Input that names nothing, or holds characters Postgres or a terminal
// should never see, is a client error (invalid_argument naming the field,
// or not_found), never internal.
func TestUserInputIsNeverInternal(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	orgID, chID := chatOrg(t, ctx, alice, bob)
	posted, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "hello"}))
	if err != nil {
		t.Fatal(err)
	}
	key := posted.Msg.GetWritten().GetKey()

	invalid := func(name, field string, err error) {
		t.Helper()
		if codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, err)
			return
		}
		if f := fieldViolations(t, err); len(f) != 1 || f[0] != field {
			t.Errorf("%s: field violations %v, want [%s]", name, f, field)
		}
	}
	post := func(text string) error {
		_, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: text}))
		return err
	}
	edit := func(text string) error {
		_, err := bob.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: key, Text: text}))
		return err
	}
	// Message text: no NUL or other control characters (tab and newline
	// are text), no ANSI escapes, no bidi overrides or isolates.
	refused := map[string]string{
		"nul":           "a\x00b",
		"escape (ansi)": "\x1b[31mred\x1b[0m",
		"bell":          "ding\a",
		"carriage ret":  "line\rover",
		"delete":        "a\x7fb",
		"c1 control":    "a\u0085b",
		"bidi override": "abc\u202edcba",
		"bidi embed":    "a\u202bb",
		"bidi isolate":  "a\u2066b\u2069",
		"line sep":      "a\u2028b",
		"bom":           "\ufeffhi",
	}
	for name, text := range refused {
		invalid("post "+name, "text", post(text))
		invalid("edit "+name, "text", edit(text))
	}
	accepted := map[string]string{
		"newline and tab": "line one\n\tline two",
		"rtl text":        "שלום עולם مرحبا",
		"rtl marks":       "abc \u200fשלום\u200e def",
		"emoji zwj":       "family 👨\u200d👩\u200d👧 flag 🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F",
		"persian zwnj":    "می\u200cخواهم",
	}
	for name, text := range accepted {
		if err := post(text); err != nil {
			t.Errorf("post %s: %v", name, err)
		}
	}
	// Names and ids with NUL or control characters.
	invalid("org name nul", "name", func() error {
		_, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "a\x00b"}))
		return err
	}())
	invalid("channel name nul", "name", func() error {
		_, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "a\x00b"}))
		return err
	}())
	invalid("team name nul", "name", func() error {
		_, err := alice.org.CreateTeam(ctx, connect.NewRequest(&orgv1.CreateTeamRequest{OrgId: orgID, Name: "a\x00b"}))
		return err
	}())
	invalid("channel id nul", "channel_id", func() error {
		_, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID + "\x00"}))
		return err
	}())
	invalid("channel id nul (post)", "channel_id", func() error {
		_, err := bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID + "\x00", Text: "x"}))
		return err
	}())
	invalid("channel id newline (list)", "channel_id", func() error {
		_, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID + "\n"}))
		return err
	}())
	invalid("message key nul", "key", func() error {
		_, err := bob.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: key + "\x00"}))
		return err
	}())
	invalid("message key control", "key", edit2(ctx, bob, "message/"+chID+"/\x01", "x"))
	invalid("member user id nul", "user_id", func() error {
		_, err := alice.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "eve\x00", Role: orgv1.Role_ROLE_MEMBER}))
		return err
	}())

	// Record keys and scopes with an empty id name nothing: not_found.
	for _, target := range []*syncv1.SubscribeRequest{
		{Records: []*syncv1.RecordTarget{{Key: "channel/"}}},
		{Records: []*syncv1.RecordTarget{{Key: "org/"}}},
		{Records: []*syncv1.RecordTarget{{Key: "userorgs/"}}},
		{Records: []*syncv1.RecordTarget{{Key: "message//x"}}},
		{Records: []*syncv1.RecordTarget{{Key: "chanmember//bob"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "channel/"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "org/"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "channel//x"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "org//x"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "user/"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "notifications/"}}},
		{Scopes: []*syncv1.ScopeTarget{{Scope: "/"}}},
	} {
		stream, err := bob.sync.Subscribe(ctx, connect.NewRequest(target))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		if c := codeOf(err); c != connect.CodeNotFound && c != connect.CodeInvalidArgument {
			t.Errorf("subscribe %v: %v, want not_found", target, err)
		}
	}
	got, err := bob.sync.Get(ctx, connect.NewRequest(&syncv1.GetRequest{Keys: []string{"channel/", "org/", "chanmember//bob", "/"}}))
	if err != nil {
		t.Errorf("get empty ids: %v", err)
	} else if len(got.Msg.GetMissingKeys()) != 4 {
		t.Errorf("get empty ids: %v, want 4 missing", got.Msg)
	}

	// Capability questions about nothing, or missing what their policy
	// needs, are answered "not found", and the call succeeds.
	questions := []*accessv1.Question{
		{Procedure: syncv1connect.SyncServiceSubscribeProcedure, Key: "channel/"},
		{Procedure: syncv1connect.SyncServiceSubscribeProcedure, Key: "org/"},
		{Procedure: syncv1connect.SyncServiceSubscribeProcedure, Key: "channel//x"},
		{Procedure: messagev1connect.MessageServicePostMessageProcedure},
		{Procedure: messagev1connect.MessageServiceEditMessageProcedure},
		{Procedure: messagev1connect.MessageServiceDeleteMessageProcedure, Key: "message//x"},
		{Procedure: messagev1connect.MessageServiceSendTypingProcedure, Params: map[string]string{"channel_id": ""}},
		{Procedure: channelv1connect.ChannelServiceCreateChannelProcedure},
		{Procedure: channelv1connect.ChannelServiceJoinChannelProcedure},
		{Procedure: channelv1connect.ChannelServiceArchiveChannelProcedure},
		{Procedure: channelv1connect.ChannelServiceListChannelsProcedure},
		{Procedure: orgv1connect.OrgServiceAddMemberProcedure},
		{Procedure: orgv1connect.OrgServiceRemoveMemberProcedure, Params: map[string]string{"org_id": orgID}},
		{Procedure: orgv1connect.OrgServiceAddTeamMemberProcedure},
		{Procedure: orgv1connect.OrgServiceCreateTeamProcedure},
	}
	res, err := bob.access.Check(ctx, connect.NewRequest(&accessv1.CheckRequest{Questions: questions}))
	if err != nil {
		t.Fatalf("check with empty ids and missing params: %v", err)
	}
	for i, a := range res.Msg.GetAnswers() {
		if a.GetAllowed() {
			t.Errorf("question %v allowed", questions[i])
		}
	}
	// Watch answers the same questions without failing.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	w, err := bob.access.Watch(wctx, connect.NewRequest(&accessv1.WatchRequest{Questions: questions}))
	if err != nil {
		t.Fatal(err)
	}
	if !w.Receive() {
		t.Fatalf("watch with empty ids: %v", w.Err())
	}
	wcancel()
}

// edit2 edits key to text as c and returns the error.
func edit2(ctx context.Context, c *chatClient, key, text string) error {
	_, err := c.msg.EditMessage(ctx, connect.NewRequest(&messagev1.EditMessageRequest{Key: key, Text: text}))
	return err
}

// rawCall POSTs body to an RPC path with contentType and alice's token and
// returns the response.
func rawCall(t *testing.T, ctx context.Context, base, token, path, contentType string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := h2c().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

// connectError is the Connect protocol's error body.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// envelope frames msg for the Connect streaming protocol.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

// streamEnd returns the error of a Connect streaming response body's
// end-of-stream message.
func streamEnd(t *testing.T, body []byte) connectError {
	t.Helper()
	for len(body) >= 5 {
		flags, n := body[0], binary.BigEndian.Uint32(body[1:5])
		if int(n) > len(body)-5 {
			break
		}
		msg := body[5 : 5+n]
		body = body[5+n:]
		if flags&2 != 0 {
			var end struct {
				Error connectError `json:"error"`
			}
			if err := json.Unmarshal(msg, &end); err != nil {
				t.Fatalf("end of stream %q: %v", msg, err)
			}
			return end.Error
		}
	}
	t.Fatalf("no end-of-stream message in %q", body)
	return connectError{}
}

// internalText matches what a client must never read in an error: Go type
// names, package paths, decoder and validator internals.
var internalText = regexp.MustCompile(`\*[a-z0-9]+\.[A-Z]|unmarshal|proto:|syntax error|Timestamp|\(line \d|larger than configured|excludesall|startswith|alphanum|oneof|gte|lte|maxbytes|nocontrol|printascii|is invalid \(`)

// Bodies that do not decode are invalid_argument "malformed request body"
// on every protocol, unary and streaming; connect-go's own wording (Go
// types, decoder positions, configured limits) never reaches a client.
func TestMalformedRequestsAreClientErrors(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")

	check := func(name string, got connectError, code, msg string) {
		t.Helper()
		if got.Code != code || (msg != "" && got.Message != msg) {
			t.Errorf("%s: %+v, want %s %q", name, got, code, msg)
		}
		if internalText.MatchString(got.Message) {
			t.Errorf("%s: client reads %q", name, got.Message)
		}
	}
	unary := func(name, path, contentType string, body []byte, code, msg string) {
		t.Helper()
		res, b := rawCall(t, ctx, app.url, alice.token, path, contentType, body, nil)
		var e connectError
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("%s: status %d body %q: %v", name, res.StatusCode, b, err)
		}
		check(name, e, code, msg)
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff header", name)
		}
	}
	const display = "/sluice.user.v1.UserService/SetDisplayName"
	unary("json syntax", display, "application/json", []byte(`{"displayName": `), "invalid_argument", "malformed request body")
	unary("json wrong type", display, "application/json", []byte(`{"displayName": 5}`), "invalid_argument", "malformed request body")
	unary("json not an object", display, "application/json", []byte(`[1,2]`), "invalid_argument", "malformed request body")
	unary("json empty", display, "application/json", nil, "invalid_argument", "malformed request body")
	unary("proto garbage", display, "application/proto", []byte{0xff, 0xff, 0xff, 0xff}, "invalid_argument", "malformed request body")
	unary("proto bad utf8", display, "application/proto", []byte{0x0a, 0x02, 0xff, 0xfe}, "invalid_argument", "malformed request body")
	unary("json object for a string", "/sluice.auth.v1.AuthService/Login", "application/json", []byte(`{"username": {"seconds": "x"}}`), "invalid_argument", "malformed request body")
	unary("json enum number too big", "/sluice.color.v1.ColorService/SetColor", "application/json", []byte(`{"color": 99999999999}`), "invalid_argument", "malformed request body")
	// Malformed bodies are refused whoever calls: the answer is the same
	// without a token (nothing is decided from the body).
	res, b := rawCall(t, ctx, app.url, "", "/sluice.auth.v1.AuthService/Login", "application/json", []byte(`{"username": 5}`), nil)
	var e connectError
	_ = json.Unmarshal(b, &e)
	check("login malformed", e, "invalid_argument", "malformed request body")
	_ = res

	// Connect GET (procedures without side effects): a message parameter
	// that is not base64 although it says so.
	for _, q := range []string{"?encoding=json&base64=1&message=!!!", "?encoding=json&message=%7B"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, app.url+"/sluice.auth.v1.AuthService/WhoAmI"+q, nil)
		req.Header.Set("Authorization", "Bearer "+alice.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var e connectError
		_ = json.Unmarshal(b, &e)
		check("GET "+q, e, "invalid_argument", "malformed request body")
	}

	// Streams: a malformed request message, and one over the size limit.
	const subscribe = "/sluice.sync.v1.SyncService/Subscribe"
	_, b = rawCall(t, ctx, app.url, alice.token, subscribe, "application/connect+json", envelope(0, []byte(`{"records": 5}`)), nil)
	check("stream malformed", streamEnd(t, b), "invalid_argument", "malformed request body")
	big := []byte(`{"records": [{"key": "` + strings.Repeat("a", 70<<10) + `"}]}`)
	_, b = rawCall(t, ctx, app.url, alice.token, subscribe, "application/connect+json", envelope(0, big), nil)
	check("stream too large", streamEnd(t, b), "resource_exhausted", "request too large: at most 65536 bytes")
	// (Refused before connect-go runs any interceptor: no nosniff header.)
	_, b = rawCall(t, ctx, app.url, alice.token, display, "application/json", []byte(`{"displayName": "`+strings.Repeat("a", 70<<10)+`"}`), nil)
	var tooBig connectError
	_ = json.Unmarshal(b, &tooBig)
	check("unary too large", tooBig, "resource_exhausted", "request too large: at most 65536 bytes")
	_, err := alice.user.SetAvatarUrl(ctx, connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/" + strings.Repeat("a", 70<<10)}))
	var tooLarge *connect.Error
	if !errors.As(err, &tooLarge) || tooLarge.Code() != connect.CodeResourceExhausted || tooLarge.Message() != "request too large: at most 65536 bytes" {
		t.Errorf("unary too large (generated client): %v", err)
	}

	// Validation messages are sentences, not validator tags.
	for name, call := range map[string]func() error{
		"excludesall": func() error {
			_, err := alice.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: "a/b"}))
			return err
		},
		"alphanum": func() error {
			_, err := alice.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: "a-b"}))
			return err
		},
		"startswith": func() error {
			_, err := alice.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: "user/alice"}))
			return err
		},
		"lte": func() error {
			_, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: "a.b", Limit: 501}))
			return err
		},
		"gte": func() error {
			_, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: "a.b", BeforeSeq: -1}))
			return err
		},
		"oneof": func() error {
			_, err := alice.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: "a", UserId: "b"}))
			return err
		},
	} {
		var ce *connect.Error
		if !errors.As(call(), &ce) || ce.Code() != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want invalid_argument", name, ce)
			continue
		}
		if internalText.MatchString(ce.Message()) {
			t.Errorf("%s: client reads %q", name, ce.Message())
		}
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// webHeaders are the headers every page and asset of the web app carries.
var webHeaders = map[string]string{
	"X-Content-Type-Options": "nosniff",
	"X-Frame-Options":        "DENY",
	"Referrer-Policy":        "no-referrer",
}

func checkWebHeaders(t *testing.T, what string, h http.Header, tls bool) {
	t.Helper()
	for k, v := range webHeaders {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, d)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("%s: Content-Security-Policy %q allows inline code", what, csp)
	}
	hsts := h.Get("Strict-Transport-Security")
	if tls && !strings.HasPrefix(hsts, "max-age=") {
		t.Errorf("%s over TLS: Strict-Transport-Security = %q", what, hsts)
	}
	if !tls && hsts != "" {
		t.Errorf("%s without TLS: Strict-Transport-Security = %q, want none", what, hsts)
	}
}

// Everything the web app serves carries a strict CSP and the anti-sniffing,
// anti-framing and referrer headers; HSTS only over TLS. RPC responses are
// nosniff too. The built app works under the CSP: no inline script or
// style, and every resource it loads is from its own origin.
func TestWebSecurityHeaders(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	plain := startApp(t, cfg)
	certFile, keyFile, pool := selfSigned(t)
	tcfg := baseConfig(t)
	tcfg.TLSCert, tcfg.TLSKey = certFile, keyFile
	secure := startApp(t, tcfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	index, err := webdist.ReadFile("webdist/index.html")
	if err != nil {
		t.Fatal(err)
	}
	asset := regexp.MustCompile(`src="(/assets/[^"]+\.js)"`).FindSubmatch(index)
	if asset == nil {
		t.Fatalf("no script asset in index.html")
	}
	paths := []string{"/", "/index.html", "/chat/abc.def", string(asset[1]), "/assets/missing.js", "/favicon.ico"}
	for _, srv := range []struct {
		base   string
		client *http.Client
		tls    bool
	}{{plain.url, http.DefaultClient, false}, {strings.Replace(secure.url, "http://", "https://", 1), httpsClient, true}} {
		for _, p := range paths {
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
				req, _ := http.NewRequestWithContext(ctx, method, srv.base+p, nil)
				res, err := srv.client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, p, err)
				}
				res.Body.Close()
				checkWebHeaders(t, method+" "+srv.base+p, res.Header, srv.tls)
			}
		}
	}

	// RPC responses (success, error, stream) are nosniff.
	alice := login(t, plain.url, "alice")
	res, _ := rawCall(t, ctx, plain.url, alice.token, "/sluice.auth.v1.AuthService/WhoAmI", "application/json", []byte(`{}`), nil)
	if res.StatusCode != http.StatusOK || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("unary RPC: status %d, nosniff %q", res.StatusCode, res.Header.Get("X-Content-Type-Options"))
	}
	res, _ = rawCall(t, ctx, plain.url, "", "/sluice.auth.v1.AuthService/WhoAmI", "application/json", []byte(`{}`), nil)
	if res.StatusCode == http.StatusOK || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("failed unary RPC: status %d, nosniff %q", res.StatusCode, res.Header.Get("X-Content-Type-Options"))
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	res, _ = rawCall(t, sctx, plain.url, alice.token, "/sluice.sync.v1.SyncService/Subscribe", "application/connect+json",
		envelope(0, []byte(`{"records": [{"key": "org/none"}]}`)), nil)
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("stream RPC: nosniff %q", res.Header.Get("X-Content-Type-Options"))
	}

	// The built app needs nothing the CSP forbids.
	page := string(index)
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`),   // inline script
		regexp.MustCompile(`<style`),                          // inline style element
		regexp.MustCompile(`\son[a-z]+\s*=`),                  // event handler attribute
		regexp.MustCompile(`\sstyle\s*=`),                     // style attribute
		regexp.MustCompile(`(?:src|href)="(?:https?:)?//`),    // another origin
		regexp.MustCompile(`<script(?:\s[^>]*)?\ssrc="[^/"]`), // a script not from this origin's root
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("index.html has %q, which the CSP blocks", m)
		}
	}
	entries, err := webdist.ReadDir("webdist/assets")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") {
			continue
		}
		js, err := webdist.ReadFile("webdist/assets/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"eval(", "new Function(", "document.write("} {
			if bytes.Contains(js, []byte(bad)) {
				t.Errorf("%s uses %s, which the CSP blocks", e.Name(), bad)
			}
		}
	}
}
