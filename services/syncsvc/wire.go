package syncsvc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// NewHandler returns the path and HTTP handler of the SyncService, with
// opts. On top of the edge's options it makes a stream's delivery cheap: a
// change is encoded once per instance and every stream sends those bytes
// (eventCodec wraps the edge's codecs), and the events a stream sends
// together reach the socket in one flush (the flush gate), not one flush
// per event. Once a stream's first message went out through connect-go
// (its headers with it), a live event smaller than edge.CompressMinBytes
// goes to the response as a ready-made envelope: the 5-byte prefix that
// the Connect, gRPC and gRPC-Web protocols share and the event's shared
// encoding, without connect-go's per-message buffering (unless
// Config.Traced asks for every message to pass the interceptors).
func NewHandler(svc *Service, opts ...connect.HandlerOption) (string, http.Handler) {
	for _, c := range edge.Codecs(svc.cfg.Logger) {
		opts = append(opts, connect.WithCodec(eventCodec{inner: c}))
	}
	path, h := syncv1connect.NewSyncServiceHandler(svc, opts...)
	return path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			h.ServeHTTP(w, r) // connect-go refuses streams on it anyway
			return
		}
		g := &flushGate{ResponseWriter: w, flusher: f}
		if !svc.cfg.Traced {
			g.direct, g.json = envelopeFormat(r.Header.Get("Content-Type"))
		}
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

	direct bool    // events may be written as envelopes (envelopeFormat)
	json   bool    // in their JSON form
	opened bool    // a message went out through connect-go: headers are out
	prefix [5]byte // the envelope prefix being written
}

// envelopeFormat tells whether the stream's messages are plain envelopes
// (flags, length, message) whose message is an event's binary (json
// false) or JSON encoding: true for the content types of Connect, gRPC
// and gRPC-Web streams with the proto and JSON codecs.
func envelopeFormat(contentType string) (direct, json bool) {
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "application/connect+proto", "application/grpc", "application/grpc+proto", "application/grpc-web", "application/grpc-web+proto":
		return true, false
	case "application/connect+json", "application/grpc+json", "application/grpc-web+json":
		return true, true
	}
	return false, false
}

// writeEvent writes e as an envelope and reports true, or reports false
// when e must go through connect-go: it may be compressed, or its
// encoding failed (connect-go reports that).
func (g *flushGate) writeEvent(e *engine.Event) (bool, error) {
	encode := e.Binary
	if g.json {
		encode = e.JSON
	}
	b, err := encode()
	if err != nil || len(b) >= edge.CompressMinBytes {
		return false, nil
	}
	n := len(b)
	g.prefix = [5]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	g.dirty = true
	if _, err := g.ResponseWriter.Write(g.prefix[:]); err != nil {
		return true, writeError(err)
	}
	if _, err := g.ResponseWriter.Write(b); err != nil {
		return true, writeError(err)
	}
	return true, nil
}

// writeError is the error connect-go returns when it cannot write a
// message.
func writeError(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeUnknown, fmt.Errorf("write envelope: %w", err))
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
func (s *sink) Send(e *engine.Event) error {
	g := s.gate
	if g == nil {
		return s.conn.Send(e)
	}
	g.hold()
	if g.direct && g.opened {
		if done, err := g.writeEvent(e); done {
			return err
		}
	}
	if err := s.conn.Send(e); err != nil {
		return err
	}
	g.opened = true
	return nil
}

// Flush sends what was written since the last Flush.
func (s *sink) Flush() error {
	if s.gate != nil {
		s.gate.release()
	}
	return nil
}

// eventCodec is one of the edge's codecs, except that a engine.Event is
// written from its ready-made encoding (binary, or JSON made once per
// event). Decoding and every other message go to the edge's codec.
type eventCodec struct{ inner connect.Codec }

func (c eventCodec) Name() string { return c.inner.Name() }

func (c eventCodec) IsBinary() bool {
	b, ok := c.inner.(interface{ IsBinary() bool })
	return !ok || b.IsBinary()
}

func (c eventCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

// MarshalAppend copies a shared encoding into dst: connect-go recycles the
// buffer it returns, and the encoding is shared by every stream.
func (c eventCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if e, ok := msg.(*engine.Event); ok {
		encode := e.JSON
		if c.IsBinary() {
			encode = e.Binary
		}
		b, err := encode()
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	}
	if a, ok := c.inner.(interface {
		MarshalAppend([]byte, any) ([]byte, error)
	}); ok {
		return a.MarshalAppend(dst, msg)
	}
	b, err := c.inner.Marshal(msg)
	return append(dst, b...), err
}

func (c eventCodec) Unmarshal(data []byte, msg any) error { return c.inner.Unmarshal(data, msg) }
