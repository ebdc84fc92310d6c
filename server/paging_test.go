package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
)

// ListChannels and ListMyOrgs answer in pages: following next_page_token
// visits every item once, in id order; the caller's memberships are told
// per page; a token the server did not make and a page size past the
// maximum are invalid_argument on their field.
func TestListsPage(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")

	var orgIDs []string
	for i := range 5 {
		o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: fmt.Sprintf("org %d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		orgIDs = append(orgIDs, o.Msg.GetOrg().GetId())
	}
	orgID, generalID := chatOrg(t, ctx, alice, bob) // bob joins "general"
	orgIDs = append(orgIDs, orgID)
	chIDs := []string{generalID}
	for i := range 6 {
		c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: fmt.Sprintf("c%d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		chIDs = append(chIDs, c.Msg.GetChannel().GetId())
	}
	// bob also joins the last channel, so his memberships span pages.
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chIDs[len(chIDs)-1]})); err != nil {
		t.Fatal(err)
	}

	var got, joined []string
	pages := 0
	for token := ""; ; {
		res, err := bob.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgID, PageSize: 3, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if n := len(res.Msg.GetChannels()); n > 3 || n == 0 {
			t.Fatalf("page %d has %d channels", pages, n)
		}
		for _, c := range res.Msg.GetChannels() {
			got = append(got, c.GetId())
		}
		joined = append(joined, res.Msg.GetJoinedChannelIds()...)
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	want := slices.Clone(chIDs)
	slices.Sort(want)
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("channels in %d pages = %v, want %v in 3", pages, got, want)
	}
	slices.Sort(joined)
	wantJoined := []string{generalID, chIDs[len(chIDs)-1]}
	slices.Sort(wantJoined)
	if !slices.Equal(joined, wantJoined) {
		t.Fatalf("joined = %v, want %v", joined, wantJoined)
	}

	// alice's organizations, two per page.
	var orgs []string
	for token := ""; ; {
		res, err := alice.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Msg.GetOrgs() {
			if o.GetRole() != orgv1.Role_ROLE_OWNER {
				t.Fatalf("role in %s = %v", o.GetOrg().GetId(), o.GetRole())
			}
			orgs = append(orgs, o.GetOrg().GetId())
		}
		if token = res.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	slices.Sort(orgIDs)
	if !slices.Equal(orgs, orgIDs) {
		t.Fatalf("orgs = %v, want %v", orgs, orgIDs)
	}
	// The default page holds them all and says there is no more.
	all, err := alice.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{}))
	if err != nil || len(all.Msg.GetOrgs()) != len(orgIDs) || all.Msg.GetNextPageToken() != "" {
		t.Fatalf("default page = %v, %v", all, err)
	}

	for _, tc := range []struct {
		name, field string
		call        func() error
	}{
		{"forged token", "page_token", func() error {
			_, err := bob.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgID, PageToken: "channel/x"}))
			return err
		}},
		{"page too big", "page_size", func() error {
			_, err := bob.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgID, PageSize: 501}))
			return err
		}},
		{"negative page", "page_size", func() error {
			_, err := alice.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{PageSize: -1}))
			return err
		}},
		{"orgs forged token", "page_token", func() error {
			_, err := alice.org.ListMyOrgs(ctx, connect.NewRequest(&orgv1.ListMyOrgsRequest{PageToken: "%%%"}))
			return err
		}},
	} {
		err := tc.call()
		if codeOf(err) != connect.CodeInvalidArgument || !slices.Contains(fieldViolations(t, err), tc.field) {
			t.Errorf("%s: %v, want invalid_argument on %s", tc.name, err, tc.field)
		}
	}
}
