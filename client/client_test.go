package client

import (
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
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
