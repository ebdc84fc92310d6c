package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
)

// A request body that trickles in is cut off at the body timeout, and the
// connection with it; a stream whose request arrived in time lives on past
// the timeout, over HTTP/1.1 (where the deadline is the connection's) and
// HTTP/2.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	cfg.BodyTimeout = 500 * time.Millisecond
	app := startApp(t, cfg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(app.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /sluice.auth.v1.AuthService/Login HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"username\":"); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() { // a byte every 200 ms: well under any rate a real client sends at
		for range 100 {
			time.Sleep(200 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = io.ReadAll(conn) // whatever the server answers, until it closes
	if err != nil {
		t.Fatalf("the server kept the trickling connection: %v", err)
	}
	// Closed after the body timeout, and well before the 10 s header
	// timeout that would close a connection kept for another request.
	if took := time.Since(start); took < cfg.BodyTimeout || took > 5*time.Second {
		t.Fatalf("connection closed after %v, want soon after the %v body timeout", took, cfg.BodyTimeout)
	}

	alice := login(t, app.url, "alice")
	alice.setAvatar(t, "https://example.com/1.png")
	for name, hc := range map[string]*http.Client{"HTTP/1.1": {}, "HTTP/2": h2c()} {
		sc := syncv1connect.NewSyncServiceClient(hc, app.url, connect.WithInterceptors(bearerInterceptor{token: &alice.token}))
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := sc.Subscribe(ctx, connect.NewRequest(&syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}}))
		if err != nil {
			t.Fatal(err)
		}
		next := func() *syncv1.SubscribeResponse {
			for stream.Receive() {
				if m := stream.Msg(); m.GetHeartbeat() == nil {
					return m
				}
			}
			t.Fatalf("%s stream ended: %v", name, stream.Err())
			return nil
		}
		for next().GetSynced() == nil {
		}
		time.Sleep(3 * cfg.BodyTimeout)
		alice.setAvatar(t, "https://example.com/"+strings.ReplaceAll(name, "/", "")+".png")
		if m := next(); m.GetRecord() == nil {
			t.Fatalf("%s: after the body timeout got %v, want the change", name, m)
		}
		cancel()
		stream.Close()
	}
}
