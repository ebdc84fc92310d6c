package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/services/edge"
)

// A member removed from an organization loses every channel membership
// there, however many: with 1003 channels none is left behind (a removal
// used to take the first 1000 only, leaving three readable and writable).
func TestRemovalTakesEveryChannel(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.RateLimits.Rates[edge.RateCreate] = edge.Unlimited // 1003 channels in a loop
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	admit(t, ctx, app.url, alice.org, orgID, "bob", orgv1.Role_ROLE_MEMBER)
	const n = 1003
	var last string
	for i := range n {
		c, err := bob.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: fmt.Sprintf("c%04d", i)}))
		if err != nil {
			t.Fatalf("channel %d: %v", i, err)
		}
		last = c.Msg.GetChannel().GetId()
	}
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "bob"})); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := app.pool.QueryRow(ctx, `SELECT count(*) FROM records WHERE key LIKE 'chanmember/%/bob' AND NOT deleted`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d channel memberships left after the removal, want 0", left)
	}
	_, err = bob.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: last, Text: "still here?"}))
	if c := codeOf(err); c != connect.CodePermissionDenied && c != connect.CodeNotFound {
		t.Fatalf("post to the last channel after the removal = %v, want permission_denied or not_found", err)
	}
}
