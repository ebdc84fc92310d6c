package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
)

func TestRetryableAndPermanent(t *testing.T) {
	t.Parallel()
	for code, want := range map[connect.Code][2]bool{ // {retryable, permanent}
		connect.CodeUnavailable:        {true, false},
		connect.CodeAborted:            {true, false},
		connect.CodeResourceExhausted:  {true, false},
		connect.CodeUnknown:            {true, false},
		connect.CodeDeadlineExceeded:   {true, false},
		connect.CodeInternal:           {false, false},
		connect.CodeInvalidArgument:    {false, true},
		connect.CodeNotFound:           {false, true},
		connect.CodePermissionDenied:   {false, true},
		connect.CodeUnauthenticated:    {false, true},
		connect.CodeFailedPrecondition: {false, true},
	} {
		err := connect.NewError(code, errors.New("x"))
		if Retryable(err) != want[0] || Permanent(err) != want[1] {
			t.Errorf("%v: retryable %v permanent %v, want %v", code, Retryable(err), Permanent(err), want)
		}
	}
}

func TestBackoffGrowsWithinBounds(t *testing.T) {
	t.Parallel()
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for n := range 40 {
		d := b.Delay(n)
		limit := min(b.Base<<min(n, 20), b.Max)
		if d < limit/2 || d > limit {
			t.Fatalf("Delay(%d) = %v, want within [%v, %v]", n, d, limit/2, limit)
		}
	}
}

// The cursors move only forward: duplicates and stale versions are not
// delivered; a reset starts the scope over; a revoked target is dropped.
func TestStreamCursors(t *testing.T) {
	t.Parallel()
	s := &stream{records: []string{"doc/1"}, scopes: []string{"docs"},
		versions: map[string]int64{"doc/1": 0}, seqs: map[string]int64{"docs": 0}, limits: map[string]int32{}}
	rec := func(key string, v, seq int64) *syncv1.SubscribeResponse {
		return &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{
			Record: &syncv1.Record{Key: key, Scope: "docs", Version: v, Seq: seq}}}}
	}
	for i, tt := range []struct {
		ev   *syncv1.SubscribeResponse
		want bool
	}{
		{rec("doc/1", 1, 1), true},
		{rec("doc/1", 1, 1), false}, // a duplicate
		{rec("doc/2", 1, 2), true},  // new in the scope
		{rec("doc/1", 2, 3), true},
		{rec("doc/2", 1, 2), false}, // stale
	} {
		if got, _ := s.apply(tt.ev); got != tt.want {
			t.Fatalf("event %d: deliver %v, want %v", i, got, tt.want)
		}
	}
	if r := s.request(); r.GetRecords()[0].GetVersion() != 2 || r.GetScopes()[0].GetAfterSeq() != 3 {
		t.Fatalf("resume request %v, want version 2 and after_seq 3", r)
	}
	s.apply(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Reset_{Reset_: &syncv1.ResetEvent{Scope: "docs"}}})
	if s.seqs["docs"] != 0 {
		t.Fatal("reset kept the scope cursor")
	}
	s.apply(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Revoked{Revoked: &syncv1.RevokedEvent{Key: "doc/1"}}})
	if len(s.request().GetRecords()) != 0 {
		t.Fatal("a revoked record is still asked for")
	}
}

// silentServer sends a record twice, then synced, then nothing: the
// duplicate is dropped (and reported), and the silent connection is
// reopened after the idle timeout.
type silentServer struct{}

var _ syncv1connect.SyncServiceHandler = silentServer{}

// errNotInFake answers the calls this test server does not serve.
var errNotInFake = connect.NewError(connect.CodeUnimplemented, errors.New("not served by this test server"))

func (silentServer) Get(context.Context, *connect.Request[syncv1.GetRequest]) (*connect.Response[syncv1.GetResponse], error) {
	return nil, errNotInFake
}

func (silentServer) List(context.Context, *connect.Request[syncv1.ListRequest]) (*connect.Response[syncv1.ListResponse], error) {
	return nil, errNotInFake
}

func (silentServer) Subscribe(ctx context.Context, _ *connect.Request[syncv1.SubscribeRequest], st *connect.ServerStream[syncv1.SubscribeResponse]) error {
	rec := &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{
		Record: &syncv1.Record{Key: "doc/1", Scope: "doc/1", Version: 1, Seq: 1}}}}
	for _, ev := range []*syncv1.SubscribeResponse{rec, rec, {Event: &syncv1.SubscribeResponse_Synced{Synced: &syncv1.SyncedEvent{}}}} {
		if err := st.Send(ev); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestSubscribeDuplicateAndIdleTimeout(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle(syncv1connect.NewSyncServiceHandler(silentServer{}))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := New(srv.URL, Config{HTTPClient: srv.Client()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var records, duplicates int
	var resumed error
	start := time.Now()
	err := c.Subscribe(ctx, Targets{Records: []*syncv1.RecordTarget{{Key: "doc/1"}}}, SubscribeOptions{
		IdleTimeout: 300 * time.Millisecond,
		OnResume:    func(err error) { resumed = err; cancel() },
		OnDuplicate: func(*syncv1.SubscribeResponse) { duplicates++ },
	}, func(ev *syncv1.SubscribeResponse) error {
		if ev.GetRecord() != nil {
			records++
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v, want canceled by OnResume", err)
	}
	if records != 1 || duplicates != 1 {
		t.Errorf("records %d, duplicates %d; want 1 and 1", records, duplicates)
	}
	if resumed == nil || !strings.Contains(resumed.Error(), "idle timeout") || time.Since(start) < 300*time.Millisecond {
		t.Errorf("resumed after %v with %v, want the idle timeout", time.Since(start), resumed)
	}
}
