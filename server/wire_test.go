package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// TestStreamProtocols follows a record over each protocol and codec a
// client may choose: after the snapshot, live events reach the response
// as ready-made envelopes (not through connect-go), so each client must
// decode every live version, in order, with its own framing.
func TestStreamProtocols(t *testing.T) {
	t.Parallel()
	app := startApp(t, baseConfig(t))
	login(t, app.url, "alice") // served: Serve has configured HTTP/2
	app.httpMu.Lock()
	own := app.h2
	app.httpMu.Unlock()
	if own == nil {
		t.Fatal("Sluice's HTTP/2 server is not the default")
	}
	for _, c := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect+proto", nil},
		{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc+json", []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
		{"grpc-web+json", []connect.ClientOption{connect.WithGRPCWeb(), connect.WithProtoJSON()}},
		{"connect+proto, gzip", []connect.ClientOption{connect.WithSendGzip()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			alice := login(t, app.url, "alice", c.opts...)
			first := alice.setAvatar(t, "https://example.com/"+strings.ReplaceAll(c.name, " ", "")+"/0.png")
			ev := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: first.GetKey()}}})
			ev.untilSynced(t)
			var want []int64
			for i := 1; i <= 5; i++ {
				w := alice.setAvatar(t, fmt.Sprintf("https://example.com/%d.png", i))
				want = append(want, w.GetVersion())
			}
			for _, v := range want {
				m := ev.next(t, 20*time.Second)
				r := m.GetRecord().GetRecord()
				if r.GetKey() != first.GetKey() || r.GetVersion() != v {
					t.Fatalf("event %v, want %s v%d", m, first.GetKey(), v)
				}
				if m.GetRecord().GetSnapshot() || m.GetRecord().GetCoalesced() {
					t.Fatalf("live event %v marked snapshot or coalesced", m)
				}
			}
		})
	}
}

// TestStdHTTP2 runs a write and a stream on the fallback, net/http's own
// HTTP/2 server (-std-http2).
func TestStdHTTP2(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.StdHTTP2 = true
	app := startApp(t, cfg)
	alice := login(t, app.url, "alice") // served: Serve has configured HTTP/2
	app.httpMu.Lock()
	own := app.h2
	app.httpMu.Unlock()
	if own != nil {
		t.Fatal("StdHTTP2 set, yet Sluice's HTTP/2 server was configured")
	}
	first := alice.setAvatar(t, "https://example.com/std/0.png")
	ev := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: first.GetKey()}}})
	ev.untilSynced(t)
	w := alice.setAvatar(t, "https://example.com/std/1.png")
	if m := ev.next(t, 20*time.Second); m.GetRecord().GetRecord().GetVersion() != w.GetVersion() {
		t.Fatalf("event %v, want version %d", m, w.GetVersion())
	}
}
