package kit

import (
	"context"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// Steps are the parts every mutating handler runs through: the validator,
// the policy table and the Store. Build one from Deps with d.Steps().
type Steps struct {
	Store    *engine.Store
	Policies *authz.Table
	Valid    *edge.Validator
}

// Steps returns the Steps of d.
func (d *Deps) Steps() Steps {
	return Steps{Store: d.Store, Policies: d.Policies, Valid: d.Valid}
}

// Call is what Write hands the body of a mutating handler: the transaction,
// the caller, and the resource the policy allowed.
type Call struct {
	Tx        *engine.Tx
	Principal *authz.Principal
	Resource  authz.Resource
}

// Write runs the steps of a mutating call, always in this order:
//
//  1. validate cmd (a struct with validate tags; nil skips this step),
//  2. take the caller from ctx (unauthenticated without one),
//  3. resolve the resource of q through the procedure's own policy
//     resolver — the one AccessService answers capability questions with,
//     so what a client is told it may do and what is enforced cannot
//     drift apart,
//  4. in one Store transaction, check the procedure's policy with facts
//     read in that transaction (so a concurrent revoke cannot be
//     overtaken), then run fn.
//
// It returns the committed changes. fn may run more than once (see
// engine.Store.Update) and must have no effect outside c.Tx.
func (s Steps) Write(ctx context.Context, procedure string, cmd any, q authz.Question, fn func(ctx context.Context, c Call) error) ([]engine.Change, error) {
	if cmd != nil {
		if err := s.Valid.Validate(ctx, cmd); err != nil {
			return nil, err
		}
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return nil, authz.ErrUnauthenticated
	}
	q.Procedure = procedure
	res, ok := s.Policies.ResourceFor(p, q)
	if !ok {
		// Check refuses to start a server with a procedure without a
		// policy; this is the same default deny, at run time.
		return nil, authz.Deny("default-deny", "no policy for this procedure")
	}
	return s.Store.Update(ctx, p.ID, func(ctx context.Context, tx *engine.Tx) error {
		if err := s.Policies.AuthorizeWith(ctx, procedure, res, access.TxFacts(tx)); err != nil {
			return err
		}
		return fn(ctx, Call{Tx: tx, Principal: p, Resource: res})
	})
}
