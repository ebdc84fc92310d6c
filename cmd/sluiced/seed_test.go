package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	sluice "github.com/sluicehq/sluice/client"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/server"
)

// `sluiced seed` creates the demo data through the RPCs.
func TestSeed(t *testing.T) {
	t.Parallel()
	dbURL, prefix := testenv.Postgres(t), testenv.Prefix()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out strings.Builder
	if err := run(ctx, []string{"seed", "-database-url", dbURL, "-nats-prefix", prefix, "-log-level", "error"}, nil, &out, io.Discard); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if !strings.Contains(out.String(), "seeded organization") {
		t.Fatalf("seed said %q", out.String())
	}
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM records WHERE key LIKE 'message/%'`).Scan(&n); err != nil || n != 6 {
		t.Fatalf("%d messages seeded (%v), want 4 posts + 2 system messages", n, err)
	}

	// What a client discovers: its organizations, their channels, and which
	// it is in.
	app, err := server.Open(ctx, server.Config{DatabaseURL: dbURL, NATSPrefix: prefix, DevUsers: devUsers})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := app.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	for user, want := range map[string]struct {
		role   orgv1.Role
		joined int
	}{"userB": {orgv1.Role_ROLE_MEMBER, 2}, "userC": {orgv1.Role_ROLE_GUEST, 0}} {
		c := sluice.New(base, sluice.Config{})
		if err := c.Login(ctx, user, strings.ToLower(user)+"-pass"); err != nil {
			t.Fatal(err)
		}
		orgc := orgv1connect.NewOrgServiceClient(c.HTTPClient(), base, c.Options()...)
		chanc := channelv1connect.NewChannelServiceClient(c.HTTPClient(), base, c.Options()...)
		orgs, err := orgc.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
		if err != nil || len(orgs.Msg.GetOrgs()) != 1 || orgs.Msg.GetOrgs()[0].GetOrg().GetName() != "Acme" || orgs.Msg.GetOrgs()[0].GetRole() != want.role {
			t.Fatalf("%s orgs = %v, %v", user, orgs, err)
		}
		chans, err := chanc.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgs.Msg.GetOrgs()[0].GetOrg().GetId()}))
		if err != nil || len(chans.Msg.GetChannels()) != 2 || len(chans.Msg.GetJoinedChannelIds()) != want.joined {
			t.Fatalf("%s channels = %v, %v", user, chans, err)
		}
	}
	// userC also holds a pending invitation to Beta, which the listing
	// above rightly does not show: it grants nothing until accepted.
	var pending int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM records WHERE key LIKE 'invitation/userC/%' AND NOT deleted`).Scan(&pending); err != nil || pending != 1 {
		t.Fatalf("%d pending invitations of userC (%v), want 1", pending, err)
	}
}
