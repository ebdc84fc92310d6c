package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"connectrpc.com/connect"

	sluice "github.com/sluicehq/sluice/client"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/server"
)

// seedUser is one development user's view of the in-process server.
type seedUser struct {
	org   orgv1connect.OrgServiceClient
	ch    channelv1connect.ChannelServiceClient
	msg   messagev1connect.MessageServiceClient
	color colorv1connect.ColorServiceClient
}

// seed creates demo data through the public RPCs, as the development users
// (userA, userB, userC, admin), so every policy and validation applies:
// an organization "Acme" owned by admin with userA (admin), userB (member)
// and userC (guest), who each accept admin's invitation, channels #general
// and #random with a few messages, color permissions for userA, and a
// pending invitation of userC to a second organization "Beta" of userA, to
// accept or decline in the web demo.
func seed(ctx context.Context, app *server.App, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go app.Serve(ln) //nolint:errcheck // ended by the caller's Shutdown
	base := "http://" + ln.Addr().String()
	users := map[string]*seedUser{}
	for name, pw := range map[string]string{"admin": "admin-pass", "userA": "usera-pass", "userB": "userb-pass", "userC": "userc-pass"} {
		c := sluice.New(base, sluice.Config{})
		if err := c.Login(ctx, name, pw); err != nil {
			return fmt.Errorf("seed needs the development users: login %s: %w", name, err)
		}
		hc, opts := c.HTTPClient(), c.Options()
		users[name] = &seedUser{
			org:   orgv1connect.NewOrgServiceClient(hc, base, opts...),
			ch:    channelv1connect.NewChannelServiceClient(hc, base, opts...),
			msg:   messagev1connect.NewMessageServiceClient(hc, base, opts...),
			color: colorv1connect.NewColorServiceClient(hc, base, opts...),
		}
	}
	admin := users["admin"]
	o, err := admin.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	orgID := o.Msg.GetOrg().GetId()
	for user, role := range map[string]orgv1.Role{"userA": orgv1.Role_ROLE_ADMIN, "userB": orgv1.Role_ROLE_MEMBER, "userC": orgv1.Role_ROLE_GUEST} {
		if _, err := admin.org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: orgID, UserId: user, Role: role})); err != nil {
			return fmt.Errorf("invite %s: %w", user, err)
		}
		if _, err := users[user].org.AcceptInvitation(ctx, connect.NewRequest(&orgv1.AcceptInvitationRequest{OrgId: orgID})); err != nil {
			return fmt.Errorf("%s accepts the invitation: %w", user, err)
		}
	}
	channels := map[string]string{}
	for _, name := range []string{"general", "random"} {
		c, err := admin.ch.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: name}))
		if err != nil {
			return fmt.Errorf("create #%s: %w", name, err)
		}
		channels[name] = c.Msg.GetChannel().GetId()
		for _, u := range []string{"userA", "userB"} {
			if _, err := users[u].ch.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: channels[name]})); err != nil {
				return fmt.Errorf("%s joins #%s: %w", u, name, err)
			}
		}
	}
	for _, m := range []struct{ user, channel, text string }{
		{"admin", "general", "Welcome to Acme!"},
		{"userA", "general", "Hi all, glad to be here."},
		{"userB", "general", "Hello! Anyone up for lunch?"},
		{"userA", "random", "Sluice streams every change live."},
	} {
		if _, err := users[m.user].msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: channels[m.channel], Text: m.text})); err != nil {
			return fmt.Errorf("post: %w", err)
		}
	}
	for _, c := range []colorv1.Color{colorv1.Color_COLOR_RED, colorv1.Color_COLOR_GREEN} {
		if _, err := admin.color.SetPermission(ctx, connect.NewRequest(&colorv1.SetPermissionRequest{UserId: "userA", Color: c, Allowed: true})); err != nil {
			return fmt.Errorf("set permission: %w", err)
		}
	}
	beta, err := users["userA"].org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Beta"}))
	if err != nil {
		return fmt.Errorf("create org: %w", err)
	}
	if _, err := users["userA"].org.AddMember(ctx, connect.NewRequest(&orgv1.AddMemberRequest{OrgId: beta.Msg.GetOrg().GetId(), UserId: "userC", Role: orgv1.Role_ROLE_MEMBER})); err != nil {
		return fmt.Errorf("invite userC: %w", err)
	}
	fmt.Fprintf(out, "seeded organization %s (Acme): #general %s, #random %s; userA may set red and green; userC is invited to Beta\n", orgID, channels["general"], channels["random"])
	return nil
}
