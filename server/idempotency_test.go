package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
)

// A retried write with the same Idempotency-Key returns the original
// response and writes nothing: a double-posted message appears once.
func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	chID := c.Msg.GetChannel().GetId()

	post := func(key, text string) (*messagev1.PostMessageResponse, error) {
		req := connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: text})
		req.Header().Set("Idempotency-Key", key)
		res, err := alice.msg.PostMessage(ctx, req)
		if err != nil {
			return nil, err
		}
		return res.Msg, nil
	}
	first, err := post("k-1", "hello once")
	if err != nil {
		t.Fatal(err)
	}
	again, err := post("k-1", "hello once")
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !proto.Equal(first, again) {
		t.Fatalf("retry answered %v, want the original %v", again, first)
	}
	// Two attempts racing with one key still write once.
	var wg sync.WaitGroup
	results := make([]*messagev1.PostMessageResponse, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := post("k-race", "raced")
			if err != nil {
				t.Errorf("racing attempt: %v", err)
			}
			results[i] = res
		}()
	}
	wg.Wait()
	for _, r := range results[1:] {
		if !proto.Equal(r, results[0]) {
			t.Fatalf("racing attempts answered differently: %v vs %v", r, results[0])
		}
	}
	// The same key for another request is refused; the key is per caller.
	if _, err := post("k-1", "something else"); codeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("key reused for another request: %v", err)
	}
	bob := chatLogin(t, app.url, "bob")
	req := connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/b.png"})
	req.Header().Set("Idempotency-Key", "k-1")
	if _, err := bob.user.SetAvatarUrl(ctx, req); err != nil {
		t.Fatalf("another caller's k-1: %v", err)
	}
	bad := connect.NewRequest(&userv1.SetAvatarUrlRequest{AvatarUrl: "https://example.com/c.png"})
	bad.Header().Set("Idempotency-Key", "has space")
	if _, err := bob.user.SetAvatarUrl(ctx, bad); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("bad key: %v", err)
	}

	res, err := alice.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID}))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, r := range res.Msg.GetMessages() {
		counts[textOf(t, r)]++
	}
	if counts["hello once"] != 1 || counts["raced"] != 1 || counts["something else"] != 0 {
		t.Fatalf("messages written: %v", counts)
	}
}
