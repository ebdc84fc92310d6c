package authz

import (
	"context"

	"google.golang.org/protobuf/proto"
)

// Facts loads the records a decision depends on: permission records,
// memberships, the old version of a record (deepstream Valve's oldData and
// cross-record lookups). authz runs no queries itself; the caller injects
// an implementation. Implementations remember every key they were asked
// for, so a stream can watch those records and re-check when they change.
type Facts interface {
	// Get loads the current version of key into msg. found is false when
	// the record does not exist or is deleted.
	Get(ctx context.Context, key string, msg proto.Message) (found bool, err error)
}

// NoFacts is a Facts for decisions that need none; Get always reports
// nothing found.
var NoFacts Facts = noFacts{}

type noFacts struct{}

func (noFacts) Get(context.Context, string, proto.Message) (bool, error) { return false, nil }
