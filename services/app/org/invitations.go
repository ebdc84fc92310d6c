package org

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	m "github.com/sluicehq/sluice/services/app/membership"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Membership is consented. An owner or admin who adds a user only invites
// them: the invitation is written twice, in the invitee's own scope
// (`invitation/<user>/<org>` in `userorgs/<user>`, which only they read)
// and in the organization's (`orginvitation/<org>/<user>` in
// `orginvitations/<org>`, which its owners and admins read). It grants
// nothing: no membership, no shared-organization profile reads, no
// channel notifications. Accepting it makes the membership and withdraws
// both records in one transaction; declining (or RemoveMember by a
// manager) withdraws them. Only a service principal adds members
// directly.

// invitationPolicies are the policies of the invitee's procedures.
func invitationPolicies() []authz.Policy {
	return []authz.Policy{
		{Procedure: orgv1connect.OrgServiceAcceptInvitationProcedure, Action: "org.accept_invitation",
			Description: "the invitee, about their own pending invitation (none: not_found)"},
		{Procedure: orgv1connect.OrgServiceDeclineInvitationProcedure, Action: "org.decline_invitation",
			Description: "the invitee, about their own pending invitation (none: not_found)"},
	}
}

// invite writes a pending invitation of user to org with role, made by
// inviter, and returns the organization's copy (written last). A pending
// invitation already there: already_exists.
func invite(ctx context.Context, tx *engine.Tx, inviter, org, user string, role orgv1.Role) (engine.Change, error) {
	if _, err := tx.Get(ctx, m.InvitationKey(user, org), nil); err == nil {
		return engine.Change{}, edge.AlreadyExists("already invited; the invitation is pending")
	} else if !errors.Is(err, engine.ErrNotFound) {
		return engine.Change{}, err
	}
	o := &orgv1.Org{}
	if _, err := tx.Get(ctx, m.OrgKey(org), o); err != nil {
		return engine.Change{}, err
	}
	inv := &orgv1.Invitation{OrgId: org, OrgName: o.GetName(), UserId: user, Role: role, InvitedBy: inviter}
	if _, err := tx.Put(ctx, m.InvitationKey(user, org), m.UserOrgsKey(user), inv); err != nil {
		return engine.Change{}, err
	}
	return tx.Put(ctx, m.OrgInvitationKey(org, user), m.OrgInvitationsScope(org), inv)
}

// withdraw deletes user's pending invitation to org, both records, and
// returns the tombstones of the invitee's copy and of the organization's;
// zero Changes if there is none. It locks the invitee's copy first, as
// invite and answer do, so concurrent calls queue instead of deadlocking.
func withdraw(ctx context.Context, tx *engine.Tx, org, user string) (invitee, orgs engine.Change, err error) {
	invitee, err = tx.Delete(ctx, m.InvitationKey(user, org))
	if errors.Is(err, engine.ErrNotFound) {
		return engine.Change{}, engine.Change{}, nil
	} else if err != nil {
		return engine.Change{}, engine.Change{}, err
	}
	orgs, err = tx.Delete(ctx, m.OrgInvitationKey(org, user))
	return invitee, orgs, err
}

type invitationCmd struct {
	OrgID string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
}

// answer authorizes procedure and runs fn in a transaction on the caller's
// pending invitation to the organization, which fn receives; none:
// not_found. It returns the change of the key named by written (from the
// committed changes, so an idempotent replay answers alike).
func (s *Service) answer(ctx context.Context, procedure, orgID string, written func(user, org string) string, fn func(ctx context.Context, tx *engine.Tx, user string, inv *orgv1.Invitation) error) (engine.Change, error) {
	cmd := invitationCmd{OrgID: orgID}
	var user string
	changes, err := s.steps().Write(ctx, procedure, cmd, authz.Question{}, func(ctx context.Context, c kit.Call) error {
		user = c.Principal.ID
		inv := &orgv1.Invitation{}
		if _, err := c.Tx.Get(ctx, m.InvitationKey(user, cmd.OrgID), inv); err != nil {
			return err // not_found: nothing pending for the caller
		}
		return fn(ctx, c.Tx, user, inv)
	})
	if err != nil {
		return engine.Change{}, err
	}
	want := written(user, cmd.OrgID)
	for _, c := range changes {
		if c.Key == want {
			return c, nil
		}
	}
	return engine.Change{}, fmt.Errorf("answer invitation: no change of %s", want)
}

// AcceptInvitation makes the caller a member of the organization with the
// role of their pending invitation and withdraws it, in one transaction.
func (s *Service) AcceptInvitation(ctx context.Context, req *connect.Request[orgv1.AcceptInvitationRequest]) (*connect.Response[orgv1.AcceptInvitationResponse], error) {
	c, err := s.answer(ctx, orgv1connect.OrgServiceAcceptInvitationProcedure, req.Msg.GetOrgId(), func(user, org string) string { return m.OrgMemberKey(org, user) }, func(ctx context.Context, tx *engine.Tx, user string, inv *orgv1.Invitation) error {
		org := inv.GetOrgId()
		key := m.OrgMemberKey(org, user)
		if _, err := tx.Get(ctx, key, nil); err == nil {
			// Invitations are withdrawn whenever a membership is made, so
			// this is never reached; refuse rather than overwrite a role.
			return edge.Precondition("already a member")
		} else if !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		if _, _, err := withdraw(ctx, tx, org, user); err != nil {
			return err
		}
		if err := m.UpdateUserOrgs(ctx, tx, user, func(idx *orgv1.UserOrgs) { m.SetOrgRole(idx, org, inv.GetRole()) }); err != nil {
			return err
		}
		_, err := tx.Put(ctx, key, m.OrgKey(org), &orgv1.Member{OrgId: org, UserId: user, Role: inv.GetRole()})
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.AcceptInvitationResponse{Written: c.RecordVersion()}), nil
}

// DeclineInvitation withdraws the caller's pending invitation.
func (s *Service) DeclineInvitation(ctx context.Context, req *connect.Request[orgv1.DeclineInvitationRequest]) (*connect.Response[orgv1.DeclineInvitationResponse], error) {
	c, err := s.answer(ctx, orgv1connect.OrgServiceDeclineInvitationProcedure, req.Msg.GetOrgId(), m.InvitationKey, func(ctx context.Context, tx *engine.Tx, user string, inv *orgv1.Invitation) error {
		_, _, err := withdraw(ctx, tx, inv.GetOrgId(), user)
		return err
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.DeclineInvitationResponse{Written: c.RecordVersion()}), nil
}
