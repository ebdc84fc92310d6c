package authz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
)

// Resource is the facts a check looks at: the record the action touches and
// anything the handler loaded for the decision.
type Resource struct {
	// Key is the record key the action touches, if any.
	Key string
	// Scope is the scope of that record, if known.
	Scope string
	// Owner is the user id that owns the record, if any.
	Owner string
	// Params are the call's inputs the check looks at, e.g. "color".
	Params map[string]string
}

// Question is a call a client may ask about before making it: the
// procedure, the key it would touch and the inputs the policy looks at.
type Question struct {
	Procedure string
	Key       string
	Params    map[string]string
}

// Check decides one action for a principal; it returns nil to allow, or a
// Denial. The principal is never nil when Check runs for a non-public
// policy. Records the decision depends on come from f.
type Check func(ctx context.Context, p *Principal, r Resource, f Facts) error

// Policy is the authorization rule of one RPC procedure.
type Policy struct {
	// Procedure is the full procedure name, e.g. /sluice.user.v1.UserService/SetAvatarUrl.
	Procedure string
	// Action is the stable action name, e.g. user.set_avatar_url.
	Action string
	// Public policies admit calls without a principal (Login).
	Public bool
	// ServerOnly policies admit only service principals; it is set from
	// the procedure's (sluice.options.v1.server_only) proto option.
	ServerOnly bool
	// Description says who may call, for the printed policy table.
	Description string
	// Check runs in the handler once it knows the resource. Nil admits any
	// authenticated principal.
	Check Check
	// Resolve builds the Resource the handler would build for a call
	// described by q, so capability answers match enforcement. Nil means
	// Resource{Key: q.Key, Params: q.Params}.
	Resolve func(p *Principal, q Question) Resource
}

// ResourceFor returns the resource a call described by q touches, as the
// procedure's handler sees it.
func (t *Table) ResourceFor(p *Principal, q Question) (Resource, bool) {
	pol, ok := t.policies[q.Procedure]
	if !ok {
		return Resource{}, false
	}
	if pol.Resolve == nil {
		return Resource{Key: q.Key, Params: q.Params}, true
	}
	return pol.Resolve(p, q), true
}

// Table holds the policy of every procedure. It is immutable after
// NewTable and safe for concurrent use.
type Table struct {
	policies map[string]Policy
	log      *slog.Logger
}

// NewTable builds a table. It returns an error if two policies name the
// same procedure or a policy lacks a procedure or action.
func NewTable(log *slog.Logger, policies ...Policy) (*Table, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Table{policies: make(map[string]Policy, len(policies)), log: log}
	for _, p := range policies {
		if p.Procedure == "" || p.Action == "" {
			return nil, fmt.Errorf("policy %q: procedure and action are required", p.Procedure+p.Action)
		}
		if _, dup := t.policies[p.Procedure]; dup {
			return nil, fmt.Errorf("procedure %s has two policies", p.Procedure)
		}
		t.policies[p.Procedure] = p
	}
	return t, nil
}

// Missing returns, sorted, the procedures that have no policy.
func (t *Table) Missing(procedures []string) []string {
	var out []string
	for _, proc := range procedures {
		if _, ok := t.policies[proc]; !ok {
			out = append(out, proc)
		}
	}
	slices.Sort(out)
	return out
}

// Lookup returns the policy of procedure.
func (t *Table) Lookup(procedure string) (Policy, bool) {
	p, ok := t.policies[procedure]
	return p, ok
}

// Admit is the first gate, run before the handler: the procedure must have
// a policy (default deny), and a non-public one needs a principal.
func (t *Table) Admit(ctx context.Context, procedure string) error {
	pol, ok := t.policies[procedure]
	if !ok {
		t.log.Warn("deny", "procedure", procedure, "rule", "default-deny", "reason", "no policy")
		return Deny("default-deny", "no policy for this procedure")
	}
	p := PrincipalFrom(ctx)
	if !pol.Public && p == nil {
		return ErrUnauthenticated
	}
	if pol.ServerOnly && (p == nil || !p.Service) {
		id := ""
		if p != nil {
			id = p.ID
		}
		t.log.Info("deny", "principal", id, "procedure", procedure, "rule", "server-only", "reason", "not a service principal")
		return Deny("server-only", "only service principals may call this procedure")
	}
	return nil
}

// Authorize runs the procedure's check against the principal of ctx and r,
// for checks that need no other records. See AuthorizeWith.
func (t *Table) Authorize(ctx context.Context, procedure string, r Resource) error {
	return t.AuthorizeWith(ctx, procedure, r, nil)
}

// AuthorizeWith runs the procedure's check against the principal of ctx, r
// and the facts f (nil means NoFacts). Service principals pass every check
// of a non-public policy (their input is still validated by the handler).
// Every refusal is logged with the principal, action, resource, rule and
// reason.
//
// In a traced call the decision is a span of its own, "sluice.authorize",
// with the action, whether it was allowed and the refusing rule.
func (t *Table) AuthorizeWith(ctx context.Context, procedure string, r Resource, f Facts) error {
	ctx, span := startSpan(ctx, "sluice.authorize")
	err := t.Decide(ctx, procedure, r, f)
	endDecision(span, t.policies[procedure].Action, err)
	var d *Denial
	if errors.As(err, &d) {
		id := ""
		if p := PrincipalFrom(ctx); p != nil {
			id = p.ID
		}
		t.log.Info("deny", "principal", id, "procedure", procedure, "key", r.Key, "scope", r.Scope, "rule", d.Rule, "reason", d.Reason)
	}
	return err
}

// Decide is AuthorizeWith without the decision log, for capability
// questions that are asked again on every change.
func (t *Table) Decide(ctx context.Context, procedure string, r Resource, f Facts) error {
	if err := t.Admit(ctx, procedure); err != nil {
		return err
	}
	pol := t.policies[procedure]
	p := PrincipalFrom(ctx)
	if pol.Check == nil || (p != nil && p.Service) {
		return nil
	}
	if f == nil {
		f = NoFacts
	}
	return pol.Check(ctx, p, r, f)
}

// Print writes the policy table, one procedure a line, sorted: the
// auditor's view of who may do what.
func (t *Table) Print(w io.Writer) error {
	procs := make([]string, 0, len(t.policies))
	for proc := range t.policies {
		procs = append(procs, proc)
	}
	slices.Sort(procs)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCEDURE\tACTION\tWHO MAY CALL")
	for _, proc := range procs {
		p := t.policies[proc]
		desc := p.Description
		if p.Public {
			desc = "anyone (public); " + desc
		}
		if p.ServerOnly {
			desc = "service principals only (server_only); " + desc
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", proc, p.Action, strings.TrimSpace(desc))
	}
	return tw.Flush()
}

// RequireUser allows only the principal whose id is userID.
func RequireUser(p *Principal, userID string) error {
	if p == nil || p.ID != userID {
		return Deny("require-user", "only the user themselves may do this")
	}
	return nil
}

// RequireRole allows only principals holding role.
func RequireRole(p *Principal, role string) error {
	if !p.HasRole(role) {
		return Deny("require-role", "requires role "+role)
	}
	return nil
}
