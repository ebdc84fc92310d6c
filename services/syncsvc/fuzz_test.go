package syncsvc

import (
	"context"
	"errors"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/services/edge"
)

func seedSubscribe(f *testing.F, msgs ...*syncv1.SubscribeRequest) {
	for _, m := range msgs {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzDecodeSubscribe feeds arbitrary bytes through the wire decoder and the
// request validation: it never panics, and whatever it accepts is within
// the documented limits.
func FuzzDecodeSubscribe(f *testing.F) {
	seedSubscribe(f,
		&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice", Version: 3}}},
		&syncv1.SubscribeRequest{Scopes: []*syncv1.ScopeTarget{{Scope: "user/alice", AfterSeq: 9}}},
		&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "", Version: -1}}},
		&syncv1.SubscribeRequest{},
	)
	v := edge.NewValidator()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &syncv1.SubscribeRequest{}
		if err := proto.Unmarshal(data, msg); err != nil {
			return // connect refuses it before the handler runs
		}
		cmd, err := decodeSubscribe(context.Background(), v, msg)
		if err != nil {
			var ve *edge.ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("refusal is not a field violation: %v", err)
			}
			return
		}
		n := len(cmd.Records) + len(cmd.Scopes)
		if n == 0 || n > MaxTargets {
			t.Fatalf("accepted %d targets", n)
		}
		for _, r := range cmd.Records {
			if r.Key == "" || len(r.Key) > 256 || !utf8.ValidString(r.Key) || r.Version < 0 {
				t.Fatalf("accepted record target %+v", r)
			}
		}
		for _, s := range cmd.Scopes {
			if s.Scope == "" || len(s.Scope) > 256 || !utf8.ValidString(s.Scope) || s.AfterSeq < 0 {
				t.Fatalf("accepted scope target %+v", s)
			}
		}
	})
}

// FuzzDecodeGet does the same for Get.
func FuzzDecodeGet(f *testing.F) {
	for _, m := range []*syncv1.GetRequest{{Keys: []string{"user/alice"}}, {}, {Keys: []string{""}}} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	v := edge.NewValidator()
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := &syncv1.GetRequest{}
		if err := proto.Unmarshal(data, msg); err != nil {
			return
		}
		cmd, err := decodeGet(context.Background(), v, msg)
		if err != nil {
			var ve *edge.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("refusal is not a field violation: %v", err)
			}
			return
		}
		if len(cmd.Keys) == 0 || len(cmd.Keys) > MaxGetKeys {
			t.Fatalf("accepted %d keys", len(cmd.Keys))
		}
		for _, k := range cmd.Keys {
			if k == "" || len(k) > 256 || !utf8.ValidString(k) {
				t.Fatalf("accepted key %q", k)
			}
		}
	})
}
