package syncsvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/authz"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// Page sizes of SyncService.List and of every typed list built on it.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// Paging is the paging part of a list request. Handlers embed it in their
// command struct, so every list validates before_seq and limit by the same
// tags (limit 0–500, 0 meaning DefaultListLimit).
type Paging struct {
	BeforeSeq int64 `field:"before_seq" validate:"gte=0"`
	Limit     int32 `field:"limit" validate:"gte=0,lte=500"`
}

// Lister reads pages of a scope's records, newest first, under the scope's
// read rule. SyncService.List and the typed lists of services
// (MessageService.ListMessages) all call Page, so their paging, read rule,
// limits and cursors are one. Safe for concurrent use.
type Lister struct {
	store *engine.Store
	reads *authz.ReadRules
	facts *access.Loader
}

// NewLister returns a Lister reading store under reads, whose rules
// consult facts through loader.
func NewLister(store *engine.Store, reads *authz.ReadRules, loader *access.Loader) *Lister {
	return &Lister{store: store, reads: reads, facts: loader}
}

// Page returns one page of scope's live records whose key starts with
// keyPrefix ("" for all), newest first, with the cursor of the next page
// and the scope's seq. The caller is the principal of ctx; a scope it may
// not read is engine.ErrNotFound, whether or not it exists. p must have been
// validated (Paging's tags); a value out of range is invalid_argument.
func (l *Lister) Page(ctx context.Context, scope, keyPrefix string, p Paging) (*syncv1.ListResponse, error) {
	switch {
	case p.BeforeSeq < 0:
		return nil, edge.Invalid("before_seq", "must be at least 0")
	case p.Limit < 0:
		return nil, edge.Invalid("limit", "must be at least 0")
	case p.Limit > MaxListLimit:
		return nil, edge.Invalid("limit", fmt.Sprintf("must be at most %d", MaxListLimit))
	}
	limit := int(p.Limit)
	if limit == 0 {
		limit = DefaultListLimit
	}
	// The scope's read rule, as for a stream; a scope the caller may not
	// read does not exist for them.
	if err := l.reads.CanRead(ctx, scope, l.facts.Facts()); err != nil {
		var d *authz.Denial
		if errors.As(err, &d) || errors.Is(err, authz.ErrHidden) || errors.Is(err, authz.ErrDenied) {
			return nil, engine.ErrNotFound
		}
		return nil, err
	}
	page, err := l.store.List(ctx, engine.ListQuery{Scope: scope, KeyPrefix: keyPrefix, BeforeSeq: p.BeforeSeq, Limit: limit})
	if err != nil {
		return nil, err
	}
	res := &syncv1.ListResponse{ScopeSeq: page.ScopeSeq, NextBeforeSeq: page.NextBeforeSeq}
	for i := range page.Records {
		rec, err := page.Records[i].Record()
		if err != nil {
			return nil, err
		}
		res.Records = append(res.Records, rec)
	}
	return res, nil
}
