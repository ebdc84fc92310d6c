package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// listPage is one page of ListMessages or of List, as a client sees it.
type listPage struct {
	records []*syncv1.Record
	next    int64
	seq     int64
}

// walk pages from the newest until the cursor is 0.
func walk(t *testing.T, page func(before int64) (listPage, error)) []listPage {
	t.Helper()
	var out []listPage
	for before := int64(0); ; {
		if len(out) > 50 {
			t.Fatal("paging does not end")
		}
		p, err := page(before)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
		if before = p.next; before == 0 {
			return out
		}
	}
}

func sameRecords(a, b []*syncv1.Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func keysOf(recs []*syncv1.Record) []string {
	var keys []string
	for _, r := range recs {
		keys = append(keys, fmt.Sprintf("%s@%d", r.GetKey(), r.GetSeq()))
	}
	return keys
}

// ListMessages is SyncService.List of the channel's scope keeping only its
// messages: where the newest records of the scope are messages, both return
// the same records, cursors and scope seq page by page; over the whole
// channel, ListMessages returns exactly List's messages in List's order;
// limits and their errors are the same; a channel the caller cannot read
// (never a member, gone, or left) is not_found to both.
func TestListMessagesIsListOfTheChannel(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	alice := chatLogin(t, app.url, "alice")
	bob := chatLogin(t, app.url, "bob")
	carol := chatLogin(t, app.url, "carol")
	_, chID := chatOrg(t, ctx, alice, bob)
	scope := "channel/" + chID
	post := func(text string) {
		t.Helper()
		if _, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: chID, Text: text})); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		post(fmt.Sprintf("m%d", i))
	}
	// A record of the scope that is not a message (bob's membership), among
	// the messages.
	if _, err := bob.chan_.LeaveChannel(ctx, connect.NewRequest(&channelv1.LeaveChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 9; i++ {
		post(fmt.Sprintf("m%d", i))
	}

	msgs := func(who *chatClient, channelID string, limit int32) func(int64) (listPage, error) {
		return func(before int64) (listPage, error) {
			res, err := who.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: channelID, BeforeSeq: before, Limit: limit}))
			if err != nil {
				return listPage{}, err
			}
			if res.Msg.GetHasMore() != (res.Msg.GetNextBeforeSeq() != 0) || res.Msg.GetNextAfterSeq() != 0 {
				return listPage{}, fmt.Errorf("has_more %v, next_before_seq %d, next_after_seq %d", res.Msg.GetHasMore(), res.Msg.GetNextBeforeSeq(), res.Msg.GetNextAfterSeq())
			}
			return listPage{res.Msg.GetMessages(), res.Msg.GetNextBeforeSeq(), res.Msg.GetScopeSeq()}, nil
		}
	}
	list := func(who *chatClient, scope string, limit int32) func(int64) (listPage, error) {
		return func(before int64) (listPage, error) {
			res, err := who.sync.List(ctx, connect.NewRequest(&syncv1.ListRequest{Scope: scope, BeforeSeq: before, Limit: limit}))
			if err != nil {
				return listPage{}, err
			}
			return listPage{res.Msg.GetRecords(), res.Msg.GetNextBeforeSeq(), res.Msg.GetScopeSeq()}, nil
		}
	}

	typed, all := walk(t, msgs(bob, chID, 3)), walk(t, list(bob, scope, 3))
	// The six newest records are m9…m4: two pages alike in every field.
	for i := range 2 {
		if !sameRecords(typed[i].records, all[i].records) || typed[i].next != all[i].next || typed[i].seq != all[i].seq {
			t.Fatalf("page %d: ListMessages %v next %d seq %d, List %v next %d seq %d", i+1,
				keysOf(typed[i].records), typed[i].next, typed[i].seq, keysOf(all[i].records), all[i].next, all[i].seq)
		}
	}
	var fromTyped, fromAll []*syncv1.Record
	for _, p := range typed {
		fromTyped = append(fromTyped, p.records...)
	}
	others := 0
	for _, p := range all {
		for _, r := range p.records {
			if strings.HasPrefix(r.GetKey(), "message/") {
				fromAll = append(fromAll, r)
			} else {
				others++
			}
		}
	}
	if !sameRecords(fromTyped, fromAll) || len(fromTyped) != 10 { // m1…m9 and "alice created #general"
		t.Fatalf("ListMessages %v, List's messages %v", keysOf(fromTyped), keysOf(fromAll))
	}
	if others < 3 { // the channel and two memberships
		t.Fatalf("List returned %d records that are not messages, want the channel and its members", others)
	}
	var texts []string
	for _, r := range fromTyped {
		texts = append(texts, textOf(t, r))
	}
	if !strings.HasPrefix(fmt.Sprint(texts), "[m9 m8 m7 m6 m5 m4 m3 m2 m1 ") {
		t.Fatalf("messages %v, want newest first", texts)
	}

	// One limit: 500 is a page for both (the default is 50), 501 the same
	// field violation for both.
	if p, err := msgs(bob, chID, 500)(0); err != nil || len(p.records) != 10 || p.next != 0 {
		t.Fatalf("ListMessages limit 500: %d records next %d, %v", len(p.records), p.next, err)
	}
	for _, page := range []func(int64) (listPage, error){msgs(bob, chID, 501), list(bob, scope, 501)} {
		_, err := page(0)
		if codeOf(err) != connect.CodeInvalidArgument || fmt.Sprint(fieldViolations(t, err)) != "[limit]" {
			t.Fatalf("limit 501: %v", err)
		}
	}
	_, err := bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID, BeforeSeq: -1}))
	if codeOf(err) != connect.CodeInvalidArgument || fmt.Sprint(fieldViolations(t, err)) != "[before_seq]" {
		t.Fatalf("before_seq -1: %v", err)
	}
	// The old oldest-first cursor is refused, not answered in another order.
	_, err = bob.msg.ListMessages(ctx, connect.NewRequest(&messagev1.ListMessagesRequest{ChannelId: chID, AfterSeq: 3}))
	if codeOf(err) != connect.CodeInvalidArgument || fmt.Sprint(fieldViolations(t, err)) != "[after_seq]" {
		t.Fatalf("after_seq 3: %v", err)
	}

	// One read rule: not_found for a channel one may not read, whether it
	// exists or not, and once one has left it.
	notFound := func(what string, page func(int64) (listPage, error)) {
		t.Helper()
		if _, err := page(0); codeOf(err) != connect.CodeNotFound {
			t.Fatalf("%s: %v, want not_found", what, err)
		}
	}
	notFound("ListMessages by an outsider", msgs(carol, chID, 0))
	notFound("List by an outsider", list(carol, scope, 0))
	notFound("ListMessages of no channel", msgs(bob, chID+"x", 0))
	notFound("List of no channel", list(bob, scope+"x", 0))
	if _, err := bob.chan_.LeaveChannel(ctx, connect.NewRequest(&channelv1.LeaveChannelRequest{ChannelId: chID})); err != nil {
		t.Fatal(err)
	}
	notFound("ListMessages after leaving", msgs(bob, chID, 0))
	notFound("List after leaving", list(bob, scope, 0))
	var ce *connect.Error
	if _, err := msgs(carol, chID, 0)(0); errors.As(err, &ce) && strings.Contains(ce.Message(), chID) {
		t.Fatalf("not_found names the channel: %v", ce.Message())
	}
}
