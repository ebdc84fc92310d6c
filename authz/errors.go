package authz

import "errors"

// Errors of authorization. The RPC edge maps ErrUnauthenticated to
// Unauthenticated, ErrDenied to PermissionDenied and ErrHidden to NotFound.
var (
	// ErrUnauthenticated means the call needs a principal and has none.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrDenied means the principal may not perform the action.
	ErrDenied = errors.New("permission denied")
	// ErrHidden means the principal may not perform the action and may not
	// learn whether the resource exists.
	ErrHidden = errors.New("not found")
)

// Denial is a refused check: which rule refused and why. Its message is
// safe to show the caller; Is matches ErrDenied or ErrHidden.
type Denial struct {
	Rule   string
	Reason string
	Hide   bool
}

// Error implements error.
func (d *Denial) Error() string {
	if d.Hide {
		return "not found"
	}
	return "permission denied: " + d.Reason
}

// Is makes errors.Is(d, ErrDenied) or errors.Is(d, ErrHidden) true.
func (d *Denial) Is(target error) bool {
	if d.Hide {
		return target == ErrHidden
	}
	return target == ErrDenied
}

// Deny returns a Denial that the caller may see.
func Deny(rule, reason string) error { return &Denial{Rule: rule, Reason: reason} }

// Hide returns a Denial reported as NotFound, so existence does not leak.
func Hide(rule, reason string) error { return &Denial{Rule: rule, Reason: reason, Hide: true} }
