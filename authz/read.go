package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// ReadRule decides who may read the records of one scope type, e.g. "user"
// for scopes "user/<id>".
type ReadRule struct {
	// Type is the scope type: the part of the scope before the first "/",
	// or the whole scope when it has none (e.g. "global-color").
	Type string
	// Description says who may read, for the printed table.
	Description string
	// Check gets the principal (never nil), the id part of the scope (""
	// when the scope has no "/") and the facts to consult.
	Check func(ctx context.Context, p *Principal, id string, f Facts) error
}

// ReadRules holds the read rule of every scope type; scopes of any other
// type cannot be read (default deny). Immutable and safe for concurrent use.
type ReadRules struct {
	rules map[string]ReadRule
}

// NewReadRules builds the rules; it returns an error on duplicate types.
func NewReadRules(rules ...ReadRule) (*ReadRules, error) {
	rr := &ReadRules{rules: make(map[string]ReadRule, len(rules))}
	for _, r := range rules {
		if _, dup := rr.rules[r.Type]; dup {
			return nil, fmt.Errorf("scope type %s has two read rules", r.Type)
		}
		rr.rules[r.Type] = r
	}
	return rr, nil
}

// SplitScope splits a scope into its type and id.
func SplitScope(scope string) (typ, id string) {
	typ, id, _ = strings.Cut(scope, "/")
	return typ, id
}

// CanRead returns nil if the principal of ctx may read scope, ErrHidden
// (as a Denial) if not: a reader must not learn whether a scope it may not
// read exists. A scope with an empty id ("channel/") names nothing and is
// refused for every principal. Records the rule depends on come from f
// (nil: NoFacts).
func (rr *ReadRules) CanRead(ctx context.Context, scope string, f Facts) error {
	p := PrincipalFrom(ctx)
	if p == nil {
		return ErrUnauthenticated
	}
	typ, id, hasID := strings.Cut(scope, "/")
	rule, ok := rr.rules[typ]
	if !ok {
		return Hide("read-default-deny", "no read rule for scope type "+typ)
	}
	if hasID && id == "" {
		return Hide("read-empty-id", "scope "+scope+" names nothing")
	}
	if p.Service {
		return nil
	}
	if f == nil {
		f = NoFacts
	}
	err := rule.Check(ctx, p, id, f)
	if err == nil {
		return nil
	}
	var de *Denial
	if !errors.As(err, &de) {
		return err // a loader failed: not a decision
	}
	return &Denial{Rule: de.Rule, Reason: de.Reason, Hide: true}
}

// Print writes the read rules, sorted by scope type.
func (rr *ReadRules) Print(w io.Writer) error {
	types := make([]string, 0, len(rr.rules))
	for t := range rr.rules {
		types = append(types, t)
	}
	slices.Sort(types)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE TYPE\tWHO MAY READ")
	for _, t := range types {
		fmt.Fprintf(tw, "%s\t%s\n", t, rr.rules[t].Description)
	}
	return tw.Flush()
}

// RequireAccess allows the principal of ctx only if it may read scope (Sync
// Gateway's requireAccess): for policies whose write is allowed to whoever
// can read, e.g. posting to a channel one is a member of. A refusal is a
// visible Denial, not hidden: the caller named the scope.
func (rr *ReadRules) RequireAccess(ctx context.Context, scope string, f Facts) error {
	err := rr.CanRead(ctx, scope, f)
	var d *Denial
	if errors.As(err, &d) {
		return Deny("require-access", "no read access to "+scope)
	}
	return err
}
