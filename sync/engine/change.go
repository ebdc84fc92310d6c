package engine

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// Change is one version of one record: a row of the changes table, or the
// current state of a record read as its latest change.
type Change struct {
	Key     string
	Scope   string
	Version int64
	Seq     int64
	Deleted bool
	// TypeName is the full proto name of the payload, e.g. sluice.user.v1.User.
	TypeName string
	// Payload is the protojson encoding of the payload, as stored in JSONB.
	Payload []byte
	// Message is the decoded payload when the writer had it in hand; nil
	// when the change was read back from Postgres.
	Message proto.Message
	Actor   string
	At      time.Time
}

// Decode unmarshals the payload into a new message of its registered type.
func (c *Change) Decode() (proto.Message, error) {
	if c.Message != nil {
		return c.Message, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(c.TypeName))
	if err != nil {
		return nil, fmt.Errorf("payload type %q: %w", c.TypeName, err)
	}
	m := mt.New().Interface()
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(c.Payload, m); err != nil {
		return nil, fmt.Errorf("decode %s payload: %w", c.TypeName, err)
	}
	return m, nil
}

// DecodeInto decodes the payload into msg, which must be of the payload's
// type (the writer's message is copied when it is in hand).
func (c *Change) DecodeInto(msg proto.Message) error {
	if c.Message != nil {
		if c.Message.ProtoReflect().Descriptor() != msg.ProtoReflect().Descriptor() {
			return fmt.Errorf("payload of %s is %s, not %s", c.Key, c.TypeName, msg.ProtoReflect().Descriptor().FullName())
		}
		proto.Reset(msg)
		proto.Merge(msg, c.Message)
		return nil
	}
	if string(msg.ProtoReflect().Descriptor().FullName()) != c.TypeName {
		return fmt.Errorf("payload of %s is %s, not %s", c.Key, c.TypeName, msg.ProtoReflect().Descriptor().FullName())
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(c.Payload, msg)
}

// Event builds the stream event for the change: a RecordEvent, or a
// RemovedEvent for a tombstone.
func (c *Change) Event(snapshot, coalesced bool) (*syncv1.SubscribeResponse, error) {
	if c.Deleted {
		return &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Removed{Removed: &syncv1.RemovedEvent{
			Key:       c.Key,
			Scope:     c.Scope,
			Version:   c.Version,
			Seq:       c.Seq,
			UpdatedAt: timestamppb.New(c.At),
			UpdatedBy: c.Actor,
		}}}, nil
	}
	rec, err := c.Record()
	if err != nil {
		return nil, err
	}
	return &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{
		Record:    rec,
		Snapshot:  snapshot,
		Coalesced: coalesced,
	}}}, nil
}

// Record builds the wire form of the change's record version.
func (c *Change) Record() (*syncv1.Record, error) {
	m, err := c.Decode()
	if err != nil {
		return nil, err
	}
	payload, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("wrap payload: %w", err)
	}
	return &syncv1.Record{
		Key:       c.Key,
		Scope:     c.Scope,
		Version:   c.Version,
		Seq:       c.Seq,
		Payload:   payload,
		UpdatedAt: timestamppb.New(c.At),
		UpdatedBy: c.Actor,
	}, nil
}

// RecordVersion returns the visibility token of the change.
func (c *Change) RecordVersion() *syncv1.RecordVersion {
	return &syncv1.RecordVersion{Key: c.Key, Scope: c.Scope, Version: c.Version, Seq: c.Seq}
}

// eventInfo is the routing information of a decoded event.
type eventInfo struct {
	key     string
	scope   string
	version int64
	seq     int64
}

// infoOf extracts the routing fields of a record or removed event; ok is
// false for any other event.
func infoOf(ev *syncv1.SubscribeResponse) (eventInfo, bool) {
	switch e := ev.GetEvent().(type) {
	case *syncv1.SubscribeResponse_Record:
		r := e.Record.GetRecord()
		return eventInfo{key: r.GetKey(), scope: r.GetScope(), version: r.GetVersion(), seq: r.GetSeq()}, r != nil
	case *syncv1.SubscribeResponse_Removed:
		r := e.Removed
		return eventInfo{key: r.GetKey(), scope: r.GetScope(), version: r.GetVersion(), seq: r.GetSeq()}, true
	}
	return eventInfo{}, false
}

// withCoalesced returns ev marked coalesced, without modifying ev (which may
// be shared by many streams).
func withCoalesced(ev *syncv1.SubscribeResponse) *syncv1.SubscribeResponse {
	e, ok := ev.GetEvent().(*syncv1.SubscribeResponse_Record)
	if !ok || e.Record.GetCoalesced() {
		return ev
	}
	return &syncv1.SubscribeResponse{Event: &syncv1.SubscribeResponse_Record{Record: &syncv1.RecordEvent{
		Record:    e.Record.GetRecord(),
		Snapshot:  e.Record.GetSnapshot(),
		Coalesced: true,
	}}}
}
