package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Windows and paging: a channel larger than the snapshot cap is refused
// without a window (invalid_argument naming scopes.limit), opens with a
// window of the newest messages, and pages back through List, newest
// first, to the first record, each once; a scope the caller may not read
// is not_found to List.
func TestScopeWindowAndPaging(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.MaxSnapshot = 10
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	carol := chatLogin(t, app.url, "carol")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: o.Msg.GetOrg().GetId(), Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	scope := "channel/" + c.Msg.GetChannel().GetId()
	const posts = 12
	for i := 1; i <= posts; i++ {
		if _, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: c.Msg.GetChannel().GetId(), Text: fmt.Sprintf("m%02d", i)})); err != nil {
			t.Fatal(err)
		}
	}

	whole := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: scope}}})
	err = whole.end(t, 10*time.Second)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.Contains(ce.Message(), "scopes.limit") {
		t.Fatalf("whole-scope subscribe = %v, want invalid_argument on scopes.limit", err)
	}

	win := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: scope, Limit: 5}}})
	snap := win.untilSynced(t)
	var texts []string
	for _, ev := range snap {
		texts = append(texts, textOf(t, ev.GetRecord().GetRecord()))
	}
	if fmt.Sprint(texts) != "[m08 m09 m10 m11 m12]" {
		t.Fatalf("window = %v, want the 5 newest messages, oldest first", texts)
	}

	// Page back from the newest: every live record of the scope once,
	// newest first.
	var seqs []int64
	before := int64(0)
	for pages := 0; ; pages++ {
		if pages > posts {
			t.Fatal("paging does not end")
		}
		res, err := alice.sync.List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: scope, BeforeSeq: before, Limit: 4}))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Msg.GetRecords() {
			seqs = append(seqs, r.GetSeq())
		}
		if before = res.Msg.GetNextBeforeSeq(); before == 0 {
			break
		}
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] >= seqs[i-1] {
			t.Fatalf("List seqs %v: not newest first, or repeated", seqs)
		}
	}
	if len(seqs) < posts+1 || seqs[len(seqs)-1] != 1 {
		t.Fatalf("List returned seqs %v, want every record down to seq 1", seqs)
	}

	_, err = carol.sync.List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: scope}))
	if codeOf(err) != connect.CodeNotFound {
		t.Fatalf("List by a non-member = %v, want not_found", err)
	}
	for _, req := range []*syncv1.ListRequest{{Scope: scope, Limit: 501}, {Scope: scope, BeforeSeq: -1}, {}} {
		if _, err := alice.sync.List(ctx, connect.NewRequest(req)); codeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("List(%v) = %v, want invalid_argument", req, err)
		}
	}
	bad := alice.subscribe(t, &syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: scope, Limit: 1001}}})
	if err := bad.end(t, 10*time.Second); codeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("window of 1001 = %v, want invalid_argument", err)
	}
}
