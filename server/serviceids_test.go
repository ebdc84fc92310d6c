package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/sluicehq/sluice/authz"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
)

// jwtIssuer signs test JWTs with an Ed25519 key whose public half the
// server reads from a key file.
type jwtIssuer struct {
	signer jose.Signer
}

// configWithJWTAndService writes a config file: the cheap test users and a
// JWT authenticator (issuer "https://idp.test/", audience "sluice") as the
// auth chain, and a token service "backend". It returns the service token
// and the JWT issuer.
func configWithJWTAndService(t *testing.T, cfg *Config) (string, *jwtIssuer) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	token, hash, err := authz.NewServiceToken()
	if err != nil {
		t.Fatal(err)
	}
	users := cfg.UsersFile
	cfg.UsersFile = ""
	y := fmt.Sprintf(`auth:
  chain:
    - type: file
      path: %s
    - type: jwt
      issuer: https://idp.test/
      audience: sluice
      key_files: [%s]
services:
  - name: backend
    secret_hash: %q
`, users, keyFile, hash)
	path := filepath.Join(dir, "sluice.yml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ConfigFile = path
	return token, &jwtIssuer{signer: signer}
}

// token returns a JWT for the subject sub, valid for an hour.
func (j *jwtIssuer) token(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.Signed(j.signer).Claims(jwt.Claims{
		Issuer: "https://idp.test/", Audience: jwt.Audience{"sluice"}, Subject: sub,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bearerChat returns the chat clients of whoever holds token.
func bearerChat(base, token string) *chatClient {
	c := newClient(base)
	c.token = token
	opt := connect.WithInterceptors(bearerInterceptor{token: &c.token})
	hc := h2c()
	return &chatClient{client: c,
		org:   orgv1connect.NewOrgServiceClient(hc, base, opt),
		chan_: channelv1connect.NewChannelServiceClient(hc, base, opt),
		msg:   messagev1connect.NewMessageServiceClient(hc, base, opt)}
}

// A service principal acts as "service:<name>": a user whose id is the
// service's bare name (here a JWT with sub "backend") neither owns nor
// authored what the service created, and no user id can take the service
// form.
func TestServicePrincipalNamespace(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	svcToken, idp := configWithJWTAndService(t, &cfg)
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The service imports an organization: it creates it (and owns it),
	// adds alice directly, opens a channel and posts in it.
	svc := bearerChat(app.url, svcToken)
	who, err := svc.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil || who.Msg.GetUserId() != "service:backend" {
		t.Errorf("service WhoAmI = %v, %v; want service:backend", who.Msg.GetUserId(), err)
	}
	o, err := svc.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Imported"}))
	if err != nil {
		t.Fatalf("service creates org: %v", err)
	}
	orgID := o.Msg.GetOrg().GetId()
	if by := o.Msg.GetOrg().GetCreatedBy(); by != "service:backend" {
		t.Errorf("org created_by = %q, want service:backend", by)
	}
	if _, err := svc.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "alice", Role: orgv1.Role_ROLE_MEMBER})); err != nil {
		t.Fatalf("service adds alice: %v", err)
	}
	ch, err := svc.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatalf("service creates channel: %v", err)
	}
	chID := ch.Msg.GetChannel().GetId()
	alice := chatLogin(t, app.url, "alice")
	if _, err := alice.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	posted, err := svc.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: "imported"}))
	if err != nil {
		t.Fatalf("service posts: %v", err)
	}
	msgKey := posted.Msg.GetWritten().GetKey()

	// A user whose id is the service's bare name is a stranger to all of it.
	impostor := bearerChat(app.url, idp.token(t, "backend"))
	who, err = impostor.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{}))
	if err != nil || who.Msg.GetUserId() != "backend" {
		t.Fatalf("JWT user WhoAmI = %v, %v; want backend", who, err)
	}
	denied := []connect.Code{connect.CodePermissionDenied, connect.CodeNotFound}
	if _, err := impostor.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "bob", Role: orgv1.Role_ROLE_ADMIN})); !slices.Contains(denied, codeOf(err)) {
		t.Errorf("JWT user backend adds a member to the service's org: %v, want denied", err)
	}
	if _, err := impostor.msg.DeleteMessage(ctx, connect.NewRequest(&messagev1.DeleteMessageRequest{Key: msgKey})); !slices.Contains(denied, codeOf(err)) {
		t.Errorf("JWT user backend deletes the service's message: %v, want denied", err)
	}
	if _, err := impostor.chan_.ArchiveChannel(ctx, connect.NewRequest(&channelv1.ArchiveChannelRequest{ChannelId: chID})); !slices.Contains(denied, codeOf(err)) {
		t.Errorf("JWT user backend archives the service's channel: %v, want denied", err)
	}
	list, err := impostor.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
	if err != nil || len(list.Msg.GetOrgs()) != 0 {
		t.Errorf("JWT user backend lists orgs: %v, %v; want none", list, err)
	}

	// No user id takes the service form: not from a JWT, not at login,
	// not where a request names a user.
	for _, sub := range []string{"service:backend", "SERVICE:backend"} {
		forged := bearerChat(app.url, idp.token(t, sub))
		if _, err := forged.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); codeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("JWT with sub %q: %v, want unauthenticated", sub, err)
		}
	}
	_, err = newClient(app.url).auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "service:backend", Password: "x"}))
	if codeOf(err) != connect.CodeInvalidArgument || !slices.Equal(fieldViolations(t, err), []string{"username"}) {
		t.Errorf("login as service:backend: %v, want invalid_argument on username", err)
	}
	_, err = svc.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: "service:other", Role: orgv1.Role_ROLE_MEMBER}))
	if codeOf(err) != connect.CodeInvalidArgument || !slices.Equal(fieldViolations(t, err), []string{"user_id"}) {
		t.Errorf("add member service:other: %v, want invalid_argument on user_id", err)
	}
	_, err = svc.color.SetPermission(ctx, connect.NewRequest(&colorv1.SetPermissionRequest{UserId: "Service:x", Color: colorv1.Color_COLOR_RED, Allowed: true}))
	if codeOf(err) != connect.CodeInvalidArgument || !slices.Equal(fieldViolations(t, err), []string{"user_id"}) {
		t.Errorf("set permission of Service:x: %v, want invalid_argument on user_id", err)
	}

	// The service still works as before: alice sees its message.
	msgs, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID}))
	if err != nil {
		t.Fatalf("alice lists messages: %v", err)
	}
	found := false
	for _, r := range msgs.Msg.GetMessages() {
		m := &messagev1.Message{}
		if err := r.GetPayload().UnmarshalTo(m); err != nil {
			t.Fatal(err)
		}
		found = found || (m.GetText() == "imported" && m.GetAuthor() == "service:backend")
	}
	if !found {
		t.Errorf("the service's message by service:backend is missing: %v", msgs.Msg.GetMessages())
	}
}
