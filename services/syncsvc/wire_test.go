package syncsvc

import (
	"bytes"
	"encoding/binary"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

func TestEnvelopeFormat(t *testing.T) {
	for _, c := range []struct {
		ct           string
		direct, json bool
	}{
		{"application/connect+proto", true, false},
		{"Application/Connect+Proto; charset=utf-8", true, false},
		{"application/grpc", true, false},
		{"application/grpc+proto", true, false},
		{"application/grpc-web", true, false},
		{"application/grpc-web+proto", true, false},
		{"application/connect+json", true, true},
		{"application/grpc+json", true, true},
		{"application/grpc-web+json", true, true},
		{"application/grpc-web-text", false, false}, // base64 framing
		{"application/connect+thrift", false, false},
		{"application/proto", false, false}, // unary
		{"", false, false},
	} {
		direct, json := envelopeFormat(c.ct)
		if direct != c.direct || json != c.json {
			t.Errorf("envelopeFormat(%q) = %v, %v; want %v, %v", c.ct, direct, json, c.direct, c.json)
		}
	}
}

// TestWriteEvent: a small event is written as flags 0, big-endian length
// and its shared encoding; one at or over edge.CompressMinBytes is left
// to connect-go, which may compress it.
func TestWriteEvent(t *testing.T) {
	small := engine.NewEvent(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Ephemeral{Ephemeral: &syncv1.EphemeralEvent{Kind: "ping"}}})
	for _, json := range []bool{false, true} {
		rec := httptest.NewRecorder()
		g := &flushGate{ResponseWriter: rec, flusher: rec, direct: true, json: json, opened: true}
		done, err := g.writeEvent(small)
		if !done || err != nil {
			t.Fatalf("json %v: writeEvent = %v, %v; want true, nil", json, done, err)
		}
		want, _ := small.Binary()
		if json {
			want, _ = small.JSON()
		}
		got := rec.Body.Bytes()
		if len(got) != 5+len(want) || got[0] != 0 || binary.BigEndian.Uint32(got[1:5]) != uint32(len(want)) || !bytes.Equal(got[5:], want) {
			t.Fatalf("json %v: envelope % x, want 00, length %d, % x", json, got, len(want), want)
		}
		if !g.dirty {
			t.Errorf("json %v: the gate would not flush what was written", json)
		}
	}

	big := engine.NewEvent(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Ephemeral{Ephemeral: &syncv1.EphemeralEvent{Kind: strings.Repeat("x", edge.CompressMinBytes)}}})
	if b, _ := big.Binary(); len(b) < edge.CompressMinBytes {
		t.Fatalf("test event is %d bytes, want at least %d", len(b), edge.CompressMinBytes)
	}
	rec := httptest.NewRecorder()
	g := &flushGate{ResponseWriter: rec, flusher: rec, direct: true, opened: true}
	if done, err := g.writeEvent(big); done || err != nil || rec.Body.Len() != 0 {
		t.Fatalf("big event: writeEvent = %v, %v and wrote %d bytes; want false, nil, nothing", done, err, rec.Body.Len())
	}
}

// countingConn is a connect.StreamingHandlerConn that counts the messages
// sent through connect-go; only Send is used.
type countingConn struct {
	connect.StreamingHandlerConn
	sent int
}

func (c *countingConn) Send(any) error {
	c.sent++
	return nil
}

// TestSinkWritesEnvelopes: the first message goes through connect-go (it
// carries the response headers); later events go to the response as
// envelopes without it, unless the gate is not direct (traced calls, other
// content types).
func TestSinkWritesEnvelopes(t *testing.T) {
	ev := engine.NewEvent(&syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Ephemeral{Ephemeral: &syncv1.EphemeralEvent{Kind: "ping"}}})
	bin, _ := ev.Binary()
	for _, direct := range []bool{true, false} {
		rec := httptest.NewRecorder()
		conn := &countingConn{}
		s := &sink{conn: conn, gate: &flushGate{ResponseWriter: rec, flusher: rec, direct: direct}}
		for range 3 {
			if err := s.Send(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		wantConnect, wantBytes := 3, 0
		if direct {
			wantConnect, wantBytes = 1, 2*(5+len(bin))
		}
		if conn.sent != wantConnect || rec.Body.Len() != wantBytes {
			t.Errorf("direct %v: %d messages through connect-go and %d bytes written; want %d and %d", direct, conn.sent, rec.Body.Len(), wantConnect, wantBytes)
		}
		if direct && !rec.Flushed {
			t.Errorf("the envelopes were not flushed")
		}
	}
}
