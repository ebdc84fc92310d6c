package syncsvc

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/sync"
)

// NewHandler returns the path and HTTP handler of the SyncService, with
// opts. On top of connect-go's defaults it makes a stream's delivery cheap:
// a change is encoded once per instance and every stream sends those bytes
// (the codecs below), and the events a stream sends together reach the
// socket in one flush (the flush gate), not one flush per event.
func NewHandler(svc *Service, opts ...connect.HandlerOption) (string, http.Handler) {
	opts = append(opts,
		connect.WithCodec(binaryCodec{}),
		connect.WithCodec(jsonCodec{name: "json"}),
		connect.WithCodec(jsonCodec{name: "json; charset=utf-8"}),
	)
	path, h := syncv1connect.NewSyncServiceHandler(svc, opts...)
	return path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			h.ServeHTTP(w, r) // connect-go refuses streams on it anyway
			return
		}
		g := &flushGate{ResponseWriter: w, flusher: f}
		h.ServeHTTP(g, r.WithContext(context.WithValue(r.Context(), gateKey{}, g)))
	})
}

// flushGate is the response writer of one SyncService call. connect-go
// flushes after every message it sends; while the gate is held those
// flushes are deferred to release, so a batch of events costs one flush
// (one HTTP/2 DATA frame or HTTP/1.1 chunk, one hand-off to the connection,
// one write on the socket). Only the handler's goroutine uses it.
type flushGate struct {
	http.ResponseWriter
	flusher http.Flusher
	held    bool
	dirty   bool
}

type gateKey struct{}

// Flush flushes now, or at release while the gate is held.
func (g *flushGate) Flush() {
	if g.held {
		g.dirty = true
		return
	}
	g.flusher.Flush()
}

// hold defers flushes until release.
func (g *flushGate) hold() { g.held = true }

// release flushes what was written while the gate was held.
func (g *flushGate) release() {
	g.held = false
	if g.dirty {
		g.dirty = false
		g.flusher.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (g *flushGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// sink sends a stream's events on a Connect server stream; see NewHandler.
type sink struct {
	conn connect.StreamingHandlerConn
	gate *flushGate // nil when the call was not served through NewHandler
}

func newSink(ctx context.Context, conn connect.StreamingHandlerConn) *sink {
	g, _ := ctx.Value(gateKey{}).(*flushGate)
	return &sink{conn: conn, gate: g}
}

// Send writes e; it reaches the client at the next Flush.
func (s *sink) Send(e *sync.Event) error {
	if s.gate != nil {
		s.gate.hold()
	}
	return s.conn.Send(e)
}

// Flush sends what was written since the last Flush.
func (s *sink) Flush() error {
	if s.gate != nil {
		s.gate.release()
	}
	return nil
}

// binaryCodec is connect-go's protobuf binary codec, except that a
// sync.Event is written from its ready-made encoding.
type binaryCodec struct{}

func (binaryCodec) Name() string   { return "proto" }
func (binaryCodec) IsBinary() bool { return true }

func (c binaryCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend copies a shared encoding into dst: connect-go recycles the
// buffer it returns, and the encoding is shared by every stream.
func (binaryCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *sync.Event:
		b, err := m.Binary()
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	case proto.Message:
		return proto.MarshalOptions{}.MarshalAppend(dst, m)
	}
	return nil, errNotProto(msg)
}

func (binaryCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return errNotProto(msg)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	return nil
}

// jsonCodec is connect-go's protojson codec, except that a sync.Event is
// written from its JSON encoding, made once per event.
type jsonCodec struct{ name string }

func (c jsonCodec) Name() string { return c.name }
func (jsonCodec) IsBinary() bool { return false }

func (c jsonCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

func (jsonCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	switch m := msg.(type) {
	case *sync.Event:
		b, err := m.JSON()
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	case proto.Message:
		return protojson.MarshalOptions{}.MarshalAppend(dst, m)
	}
	return nil, errNotProto(msg)
}

func (jsonCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return errNotProto(msg)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	// Unknown fields are dropped, so clients may be newer than the server.
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	return nil
}

func errNotProto(msg any) error {
	return fmt.Errorf("%T is not a protobuf message", msg)
}
