package engine

import (
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Event is one stream event as it goes out: the message and its encodings.
// A live change is turned into one Event per instance, and every stream
// that sends it sends the same bytes: the binary form arrives ready-made
// from NATS (the Publisher's encoding), and the JSON form is made on first
// use. An Event is never modified after it is made and is safe for
// concurrent use.
type Event struct {
	// Msg is the event. It is shared: never modify it.
	Msg *syncv1.SubscribeResponse

	binOnce sync.Once
	bin     []byte
	binErr  error

	jsonOnce sync.Once
	json     []byte
	jsonErr  error
}

// NewEvent returns an Event for msg, which the caller must not modify
// afterwards.
func NewEvent(msg *syncv1.SubscribeResponse) *Event { return &Event{Msg: msg} }

// encodedEvent returns an Event whose binary encoding is already known.
func encodedEvent(msg *syncv1.SubscribeResponse, bin []byte) *Event {
	e := &Event{Msg: msg, bin: bin}
	e.binOnce.Do(func() {})
	return e
}

// Binary returns the protobuf binary encoding of the event, made once. The
// caller must not modify it.
func (e *Event) Binary() ([]byte, error) {
	e.binOnce.Do(func() { e.bin, e.binErr = proto.Marshal(e.Msg) })
	return e.bin, e.binErr
}

// JSON returns the protojson encoding of the event, made once. The caller
// must not modify it.
func (e *Event) JSON() ([]byte, error) {
	e.jsonOnce.Do(func() { e.json, e.jsonErr = protojson.Marshal(e.Msg) })
	return e.json, e.jsonErr
}

// Sink is where one stream's events go. The Streamer calls it from the
// stream's goroutine only. Send may hold an event back in a buffer; Flush
// pushes everything sent so far to the client. The Streamer sends what it
// has at hand (a catch-up, the live changes queued since the last wake) and
// then flushes once, so a busy stream pays one network write for many
// events.
type Sink interface {
	Send(*Event) error
	Flush() error
}

// SinkFunc adapts a function to a Sink that delivers each event at once
// (Flush does nothing).
type SinkFunc func(*syncv1.SubscribeResponse) error

// Send calls f with the event's message.
func (f SinkFunc) Send(e *Event) error { return f(e.Msg) }

// Flush does nothing: f delivered every event already.
func (f SinkFunc) Flush() error { return nil }
