package client

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// WaitForVersion waits until a stream shows record key at version or
// later: the visibility token of a write (its written key and version)
// means the write is visible to readers once this returns. It returns
// ctx's error if that does not happen first, or the error that ended the
// stream for good (not_found: the caller may not read the record).
func (c *Client) WaitForVersion(ctx context.Context, key string, version int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reached := false
	err := c.Subscribe(ctx, Targets{Records: []*syncv1.RecordTarget{{Key: key}}}, SubscribeOptions{},
		func(ev *syncv1.SubscribeResponse) error {
			v := ev.GetRecord().GetRecord().GetVersion()
			if rm := ev.GetRemoved(); rm != nil {
				v = rm.GetVersion()
			}
			if v >= version {
				reached = true
				cancel()
			}
			return nil
		})
	if reached {
		return nil
	}
	return err
}

// Payload decodes the payload of a record into a new message of its type
// (the generated packages of the type must be linked into the program).
func Payload(r *syncv1.Record) (proto.Message, error) {
	m, err := r.GetPayload().UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("payload of %s: %w", r.GetKey(), err)
	}
	return m, nil
}
