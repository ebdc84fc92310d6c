package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/services/edge"
)

// ownChannel has c create an organization and a channel in it.
func ownChannel(t *testing.T, ctx context.Context, c *chatClient) (orgID, chID string) {
	t.Helper()
	o, err := c.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Own"}))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := c.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	return o.Msg.GetOrg().GetId(), ch.Msg.GetChannel().GetId()
}

// checkRetryHint fails unless err is resource_exhausted and says when to
// retry: a RetryInfo detail and a Retry-After header.
func checkRetryHint(t *testing.T, err error) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Fatalf("got %v, want resource_exhausted", err)
	}
	if ce.Meta().Get("Retry-After") == "" {
		t.Errorf("no Retry-After header in %v", ce.Meta())
	}
	found := false
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
				found = true
			}
		}
	}
	if !found {
		t.Errorf("no RetryInfo detail in %v", err)
	}
}

// Typing signals are limited per user (default 10 at once, 30 a minute):
// of 60 in a row the later ones are refused, while another user types on.
func TestRateLimitTyping(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	_, aliceCh := ownChannel(t, ctx, alice)
	_, bobCh := ownChannel(t, ctx, bob)

	var ok, refused int
	var last error
	for range 60 {
		_, err := alice.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: aliceCh}))
		switch {
		case err == nil:
			ok++
		case codeOf(err) == connect.CodeResourceExhausted:
			refused++
			last = err
		default:
			t.Fatalf("typing: %v", err)
		}
	}
	if ok < 10 || refused < 40 {
		t.Fatalf("60 typing signals: %d accepted, %d refused; want the burst (10) accepted and most of the rest refused", ok, refused)
	}
	checkRetryHint(t, last)
	// Another user, and alice's other classes, are unaffected.
	if _, err := bob.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: bobCh})); err != nil {
		t.Fatalf("bob typing: %v", err)
	}
	if _, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: aliceCh, Text: "still talking"})); err != nil {
		t.Fatalf("alice posting after her typing was limited: %v", err)
	}
}

// A user creating channels in a loop is stopped (default 20 at once, 20 a
// minute); reads go on, another user creates freely, and a service
// principal is not limited at all.
func TestRateLimitCreate(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	token := configWithServices(t, &cfg, "")
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	orgID, _ := ownChannel(t, ctx, alice) // two creations

	created := 2
	var err error
	for i := range 200 {
		_, err = alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: fmt.Sprintf("c%03d", i)}))
		if err != nil {
			break
		}
		created++
	}
	if created > 25 {
		t.Fatalf("alice created %d channels in a loop before being stopped, want about 20", created)
	}
	checkRetryHint(t, err)
	if _, err := alice.chan_.ListChannels(ctx, connect.NewRequest(&channelv1.ListChannelsRequest{OrgId: orgID})); err != nil {
		t.Fatalf("listing while create-limited: %v", err)
	}
	ownChannel(t, ctx, bob)

	billing := newClient(app.url)
	billing.token = token
	opt := connect.WithInterceptors(bearerInterceptor{token: &billing.token})
	svcOrg := orgv1connect.NewOrgServiceClient(h2c(), app.url, opt)
	svcChan := channelv1connect.NewChannelServiceClient(h2c(), app.url, opt)
	o, err := svcOrg.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Imported"}))
	if err != nil {
		t.Fatalf("service create org: %v", err)
	}
	for i := range 60 {
		if _, err := svcChan.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: fmt.Sprintf("s%03d", i)})); err != nil {
			t.Fatalf("service channel %d: %v", i+1, err)
		}
	}
}

// The limits are configuration: with limits.rates.create off (in the
// config file) a user creates as many as they like; a flag wins over the
// file.
func TestRateLimitConfigurable(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	configWithServices(t, &cfg, "limits:\n  rates:\n    create: {attempts: -1}\n    typing: {attempts: -1}\n")
	typing, err := ParseRate("2/1h") // what -rate-typing 2/1h sets
	if err != nil {
		t.Fatal(err)
	}
	cfg.RateLimits.Rates[edge.RateTyping] = typing
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	orgID, chID := ownChannel(t, ctx, alice)
	for i := range 40 {
		if _, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: fmt.Sprintf("c%03d", i)})); err != nil {
			t.Fatalf("channel %d with the create limit off: %v", i+1, err)
		}
	}
	for range 3 {
		_, err = alice.msg.SendTyping(ctx, connect.NewRequest(&messagev1.SendTypingRequest{ChannelId: chID}))
	}
	if codeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("3rd typing with -rate-typing 2/1h = %v, want resource_exhausted", err)
	}
}
