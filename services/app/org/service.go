// Package org is the OrgService: organizations, their members and roles.
package org

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/services/access"
	m "github.com/sluicehq/sluice/services/app/membership"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Service implements sluice.org.v1.OrgService.
type Service struct {
	store    *engine.Store
	policies *authz.Table
	valid    *edge.Validator
}

var _ orgv1connect.OrgServiceHandler = (*Service)(nil)

// steps are the shared steps of the service's mutating handlers.
func (s *Service) steps() kit.Steps {
	return kit.Steps{Store: s.store, Policies: s.policies, Valid: s.valid}
}

// NewService returns the OrgService.
func NewService(store *engine.Store, policies *authz.Table, valid *edge.Validator) *Service {
	return &Service{store: store, policies: policies, valid: valid}
}

var roleNames = map[orgv1.Role]string{
	orgv1.Role_ROLE_OWNER: "owner", orgv1.Role_ROLE_ADMIN: "admin",
	orgv1.Role_ROLE_MEMBER: "member", orgv1.Role_ROLE_GUEST: "guest",
}

// manage allows owners and admins of the organization; only owners may
// grant, take or touch the owner role. Non-members learn nothing.
func manage(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	org := r.Params["org_id"]
	actor, err := m.Role(ctx, f, org, p.ID)
	if err != nil {
		return err
	}
	if actor == orgv1.Role_ROLE_UNSPECIFIED {
		return authz.Hide("org-member", "not a member of org "+org)
	}
	target, err := m.Role(ctx, f, org, r.Params["user_id"])
	if err != nil {
		return err
	}
	self := r.Params["user_id"] == p.ID
	if r.Params["action"] == "remove" && self {
		return nil // anyone may leave (the last owner is refused in the handler)
	}
	if !m.IsManager(actor) {
		return authz.Deny("org-manager", "only owners and admins manage members")
	}
	if (r.Params["role"] == "owner" || target == orgv1.Role_ROLE_OWNER) && actor != orgv1.Role_ROLE_OWNER {
		return authz.Deny("org-owner", "only owners grant, take or remove the owner role")
	}
	return nil
}

// resolve builds the resource of a membership change as the handlers do.
func resolve(action string) func(*authz.Principal, authz.Question) authz.Resource {
	return func(_ *authz.Principal, q authz.Question) authz.Resource {
		org, user := q.Params["org_id"], q.Params["user_id"]
		return authz.Resource{Key: m.OrgMemberKey(org, user), Scope: m.OrgKey(org),
			Params: map[string]string{"org_id": org, "user_id": user, "role": q.Params["role"], "action": action}}
	}
}

// Policies returns the policy of every OrgService procedure.
func Policies() []authz.Policy {
	return append(invitationPolicies(), []authz.Policy{
		{Procedure: orgv1connect.OrgServiceCreateTeamProcedure, Action: "org.create_team",
			Description: "owners and admins of the organization", Check: manage, Resolve: resolve("team")},
		{Procedure: orgv1connect.OrgServiceAddTeamMemberProcedure, Action: "org.add_team_member",
			Description: "owners and admins of the organization", Check: manage, Resolve: resolve("team")},
		{Procedure: orgv1connect.OrgServiceRemoveTeamMemberProcedure, Action: "org.remove_team_member",
			Description: "owners and admins, or the member themselves", Check: manage, Resolve: resolve("remove")},
		{Procedure: orgv1connect.OrgServiceListMyOrgsProcedure, Action: "org.list_mine",
			Description: "any authenticated user, about their own memberships"},
		{Procedure: orgv1connect.OrgServiceCreateOrgProcedure, Action: "org.create",
			Description: "any authenticated user; they become its owner"},
		{Procedure: orgv1connect.OrgServiceAddMemberProcedure, Action: "org.add_member",
			Description: "owners and admins of the organization invite (only owners invite owners); service principals add directly", Check: manage, Resolve: resolve("add")},
		{Procedure: orgv1connect.OrgServiceChangeRoleProcedure, Action: "org.change_role",
			Description: "owners and admins; only owners grant or take the owner role", Check: manage, Resolve: resolve("change")},
		{Procedure: orgv1connect.OrgServiceRemoveMemberProcedure, Action: "org.remove_member",
			Description: "owners and admins (only owners remove owners), or the member themselves; withdraws a pending invitation", Check: manage, Resolve: resolve("remove")},
	}...)
}

type createCmd struct {
	Name string `field:"name" validate:"required,utf8,nocontrol,min=1,max=100"`
}

// CreateOrg creates an organization owned by the caller.
func (s *Service) CreateOrg(ctx context.Context, req *connect.Request[orgv1.CreateOrgRequest]) (*connect.Response[orgv1.CreateOrgResponse], error) {
	cmd := createCmd{Name: req.Msg.GetName()}
	id := engine.NewID()
	changes, err := s.steps().Write(ctx, orgv1connect.OrgServiceCreateOrgProcedure, cmd, authz.Question{}, func(ctx context.Context, c kit.Call) error {
		tx, p := c.Tx, c.Principal
		o := &orgv1.Org{Id: id, Name: cmd.Name, CreatedBy: p.ID}
		key := m.OrgKey(o.Id)
		if _, err := tx.Put(ctx, key, key, o); err != nil {
			return err
		}
		if _, err := tx.Put(ctx, m.OrgMemberKey(o.Id, p.ID), key, &orgv1.Member{OrgId: o.Id, UserId: p.ID, Role: orgv1.Role_ROLE_OWNER}); err != nil {
			return err
		}
		return m.UpdateUserOrgs(ctx, tx, p.ID, func(idx *orgv1.UserOrgs) { m.SetOrgRole(idx, o.Id, orgv1.Role_ROLE_OWNER) })
	})
	if err != nil {
		return nil, err
	}
	created := &orgv1.Org{} // from the change: a replay returns the original org
	if err := changes[0].DecodeInto(created); err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.CreateOrgResponse{Org: created, Written: changes[0].RecordVersion()}), nil
}

type memberCmd struct {
	OrgID  string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
	UserID string `field:"user_id" validate:"required,maxbytes=128,utf8,nocontrol,excludesall=/ ,userid"`
	Role   string `field:"role" validate:"required,oneof=owner admin member guest"`
}

func (s *Service) decode(ctx context.Context, orgID, userID string, role orgv1.Role, needRole bool) (memberCmd, error) {
	cmd := memberCmd{OrgID: orgID, UserID: userID, Role: roleNames[role]}
	if !needRole {
		cmd.Role = "member" // not part of the request
	}
	return cmd, s.valid.Validate(ctx, cmd)
}

// write runs a membership change: authorize over locked facts, then fn.
func (s *Service) write(ctx context.Context, procedure string, cmd memberCmd, fn func(ctx context.Context, tx *engine.Tx) (engine.Change, error)) (engine.Change, error) {
	// The policy's resolver names the membership and the action.
	q := authz.Question{Params: map[string]string{"org_id": cmd.OrgID, "user_id": cmd.UserID, "role": cmd.Role}}
	changes, err := s.steps().Write(ctx, procedure, nil, q, func(ctx context.Context, c kit.Call) error {
		_, err := fn(ctx, c.Tx)
		return err
	})
	if err != nil {
		return engine.Change{}, err
	}
	// The membership change is the last one (channel memberships a removal
	// takes along come first); from the changes, so a replay answers alike.
	return changes[len(changes)-1], nil
}

// owners counts the owners of org, locking their membership rows.
func owners(ctx context.Context, tx *engine.Tx, org string) (int, error) {
	keys, err := tx.KeysMatching(ctx, "orgmember/"+org+"/", "")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		mem := &orgv1.Member{}
		if _, err := tx.Get(ctx, k, mem); err != nil {
			return 0, err
		}
		if mem.GetRole() == orgv1.Role_ROLE_OWNER {
			n++
		}
	}
	return n, nil
}

// AddMember invites a user to an organization with a role or, for a
// service principal, adds them directly (withdrawing a pending invitation).
// A member or a pending invitee cannot be invited again (already_exists).
func (s *Service) AddMember(ctx context.Context, req *connect.Request[orgv1.AddMemberRequest]) (*connect.Response[orgv1.AddMemberResponse], error) {
	cmd, err := s.decode(ctx, req.Msg.GetOrgId(), req.Msg.GetUserId(), req.Msg.GetRole(), true)
	if err != nil {
		return nil, err
	}
	p := authz.PrincipalFrom(ctx)
	c, err := s.write(ctx, orgv1connect.OrgServiceAddMemberProcedure, cmd, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		key := m.OrgMemberKey(cmd.OrgID, cmd.UserID)
		if _, err := tx.Get(ctx, key, nil); err == nil {
			return engine.Change{}, edge.AlreadyExists("already a member; use ChangeRole")
		} else if !errors.Is(err, engine.ErrNotFound) {
			return engine.Change{}, err
		}
		if !p.Service {
			return invite(ctx, tx, p.ID, cmd.OrgID, cmd.UserID, req.Msg.GetRole())
		}
		if _, _, err := withdraw(ctx, tx, cmd.OrgID, cmd.UserID); err != nil {
			return engine.Change{}, err
		}
		if err := m.UpdateUserOrgs(ctx, tx, cmd.UserID, func(idx *orgv1.UserOrgs) { m.SetOrgRole(idx, cmd.OrgID, req.Msg.GetRole()) }); err != nil {
			return engine.Change{}, err
		}
		return tx.Put(ctx, key, m.OrgKey(cmd.OrgID), &orgv1.Member{OrgId: cmd.OrgID, UserId: cmd.UserID, Role: req.Msg.GetRole()})
	})
	if err != nil {
		return nil, err
	}
	// From the change, so a replay answers alike.
	invited := strings.HasPrefix(c.Key, "orginvitation/")
	return connect.NewResponse(&orgv1.AddMemberResponse{Written: c.RecordVersion(), Invited: invited}), nil
}

// ChangeRole changes a member's role; the last owner keeps theirs.
func (s *Service) ChangeRole(ctx context.Context, req *connect.Request[orgv1.ChangeRoleRequest]) (*connect.Response[orgv1.ChangeRoleResponse], error) {
	cmd, err := s.decode(ctx, req.Msg.GetOrgId(), req.Msg.GetUserId(), req.Msg.GetRole(), true)
	if err != nil {
		return nil, err
	}
	c, err := s.write(ctx, orgv1connect.OrgServiceChangeRoleProcedure, cmd, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		key := m.OrgMemberKey(cmd.OrgID, cmd.UserID)
		mem := &orgv1.Member{}
		if _, err := tx.Get(ctx, key, mem); err != nil {
			return engine.Change{}, err
		}
		if mem.GetRole() == orgv1.Role_ROLE_OWNER && req.Msg.GetRole() != orgv1.Role_ROLE_OWNER {
			n, err := owners(ctx, tx, cmd.OrgID)
			if err != nil {
				return engine.Change{}, err
			}
			if n <= 1 {
				return engine.Change{}, edge.Precondition("an organization keeps at least one owner")
			}
		}
		mem.Role = req.Msg.GetRole()
		teams, err := m.TeamsOf(ctx, tx, cmd.OrgID, cmd.UserID)
		if err != nil {
			return engine.Change{}, err
		}
		// The channels the new role no longer admits go first: the
		// membership change stays the last one.
		if err := m.PruneChannels(ctx, tx, cmd.OrgID, cmd.UserID, m.Standing{Role: mem.Role, Teams: teams}); err != nil {
			return engine.Change{}, err
		}
		if err := m.UpdateUserOrgs(ctx, tx, cmd.UserID, func(idx *orgv1.UserOrgs) { m.SetOrgRole(idx, cmd.OrgID, mem.Role) }); err != nil {
			return engine.Change{}, err
		}
		return tx.Put(ctx, key, m.OrgKey(cmd.OrgID), mem)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.ChangeRoleResponse{Written: c.RecordVersion()}), nil
}

// RemoveMember removes a member and, in the same transaction, their
// memberships of the organization's channels: their streams on the
// organization and its channels are revoked.
func (s *Service) RemoveMember(ctx context.Context, req *connect.Request[orgv1.RemoveMemberRequest]) (*connect.Response[orgv1.RemoveMemberResponse], error) {
	cmd, err := s.decode(ctx, req.Msg.GetOrgId(), req.Msg.GetUserId(), 0, false)
	if err != nil {
		return nil, err
	}
	c, err := s.write(ctx, orgv1connect.OrgServiceRemoveMemberProcedure, cmd, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		key := m.OrgMemberKey(cmd.OrgID, cmd.UserID)
		mem := &orgv1.Member{}
		if _, err := tx.Get(ctx, key, mem); errors.Is(err, engine.ErrNotFound) {
			// Not a member: withdraw a pending invitation, if any; the
			// organization's copy, which managers read, is written last.
			_, c, werr := withdraw(ctx, tx, cmd.OrgID, cmd.UserID)
			if werr != nil || c.Key == "" {
				return engine.Change{}, cmp.Or(werr, err)
			}
			return c, nil
		} else if err != nil {
			return engine.Change{}, err
		}
		if mem.GetRole() == orgv1.Role_ROLE_OWNER {
			n, err := owners(ctx, tx, cmd.OrgID)
			if err != nil {
				return engine.Change{}, err
			}
			if n <= 1 {
				return engine.Change{}, edge.Precondition("the last owner cannot leave the organization")
			}
		}
		if err := m.PruneChannels(ctx, tx, cmd.OrgID, cmd.UserID, m.Standing{}); err != nil {
			return engine.Change{}, err
		}
		teams, err := tx.KeysMatching(ctx, "teammember/"+cmd.OrgID+"/", "/"+cmd.UserID)
		if err != nil {
			return engine.Change{}, err
		}
		for _, k := range teams {
			if _, err := tx.Delete(ctx, k); err != nil {
				return engine.Change{}, err
			}
		}
		if err := m.UpdateUserOrgs(ctx, tx, cmd.UserID, func(idx *orgv1.UserOrgs) { m.DropOrg(idx, cmd.OrgID) }); err != nil {
			return engine.Change{}, err
		}
		return tx.Delete(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.RemoveMemberResponse{Written: c.RecordVersion()}), nil
}

type listMineCmd struct {
	PageSize int32 `field:"page_size" validate:"gte=0,lte=500"`
}

// ListMyOrgs lists a page of the caller's organizations and roles, in
// organization id order.
func (s *Service) ListMyOrgs(ctx context.Context, req *connect.Request[orgv1.ListMyOrgsRequest]) (*connect.Response[orgv1.ListMyOrgsResponse], error) {
	cmd := listMineCmd{PageSize: req.Msg.GetPageSize()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	after, err := edge.ParsePageToken("page_token", req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, orgv1connect.OrgServiceListMyOrgsProcedure, authz.Resource{}); err != nil {
		return nil, err
	}
	p := authz.PrincipalFrom(ctx)
	mems, more, err := s.store.Matching(ctx, "orgmember/", "/"+p.ID, after, edge.PageSize(cmd.PageSize))
	if err != nil {
		return nil, err
	}
	res := &orgv1.ListMyOrgsResponse{}
	if more {
		res.NextPageToken = edge.PageToken(mems[len(mems)-1].Key)
	}
	keys := make([]string, 0, len(mems))
	roles := map[string]orgv1.Role{}
	for i := range mems {
		mem := &orgv1.Member{}
		if err := mems[i].DecodeInto(mem); err != nil {
			return nil, err
		}
		if mem.GetUserId() != p.ID { // a user id with "/" cannot match another's suffix, but be exact
			continue
		}
		keys = append(keys, m.OrgKey(mem.GetOrgId()))
		roles[m.OrgKey(mem.GetOrgId())] = mem.GetRole()
	}
	orgs, err := s.store.Records(ctx, keys)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]*orgv1.Org, len(orgs))
	for i := range orgs {
		if orgs[i].Deleted {
			continue
		}
		o := &orgv1.Org{}
		if err := orgs[i].DecodeInto(o); err != nil {
			return nil, err
		}
		byKey[orgs[i].Key] = o
	}
	for _, k := range keys { // membership (organization id) order
		if o, ok := byKey[k]; ok {
			res.Orgs = append(res.Orgs, &orgv1.MyOrg{Org: o, Role: roles[k]})
		}
	}
	return connect.NewResponse(res), nil
}

type teamCmd struct {
	OrgID string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
	Name  string `field:"name" validate:"required,utf8,nocontrol,min=1,max=80"`
}

// CreateTeam creates a team in an organization.
func (s *Service) CreateTeam(ctx context.Context, req *connect.Request[orgv1.CreateTeamRequest]) (*connect.Response[orgv1.CreateTeamResponse], error) {
	cmd := teamCmd{OrgID: req.Msg.GetOrgId(), Name: req.Msg.GetName()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	team := &orgv1.Team{Id: engine.NewID(), OrgId: cmd.OrgID, Name: cmd.Name}
	c, err := s.write(ctx, orgv1connect.OrgServiceCreateTeamProcedure, memberCmd{OrgID: cmd.OrgID, Role: "member"}, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		return tx.Put(ctx, m.TeamKey(cmd.OrgID, team.Id), m.OrgKey(cmd.OrgID), team)
	})
	if err != nil {
		return nil, err
	}
	created := &orgv1.Team{}
	if err := c.DecodeInto(created); err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.CreateTeamResponse{Team: created, Written: c.RecordVersion()}), nil
}

type teamMemberCmd struct {
	OrgID  string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
	TeamID string `field:"team_id" validate:"required,maxbytes=64,alphanum"`
	UserID string `field:"user_id" validate:"required,maxbytes=128,utf8,nocontrol,excludesall=/ ,userid"`
}

// AddTeamMember adds a member of the organization to a team.
func (s *Service) AddTeamMember(ctx context.Context, req *connect.Request[orgv1.AddTeamMemberRequest]) (*connect.Response[orgv1.AddTeamMemberResponse], error) {
	cmd := teamMemberCmd{OrgID: req.Msg.GetOrgId(), TeamID: req.Msg.GetTeamId(), UserID: req.Msg.GetUserId()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	c, err := s.write(ctx, orgv1connect.OrgServiceAddTeamMemberProcedure, memberCmd{OrgID: cmd.OrgID, UserID: cmd.UserID, Role: "member"}, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		if _, err := tx.Get(ctx, m.TeamKey(cmd.OrgID, cmd.TeamID), nil); err != nil {
			return engine.Change{}, err
		}
		if _, err := tx.Get(ctx, m.OrgMemberKey(cmd.OrgID, cmd.UserID), nil); errors.Is(err, engine.ErrNotFound) {
			return engine.Change{}, edge.Precondition("only members of the organization join its teams")
		} else if err != nil {
			return engine.Change{}, err
		}
		if err := m.UpdateUserOrgs(ctx, tx, cmd.UserID, func(idx *orgv1.UserOrgs) { m.SetTeam(idx, cmd.OrgID, cmd.TeamID, true) }); err != nil {
			return engine.Change{}, err
		}
		return tx.Put(ctx, m.TeamMemberKey(cmd.OrgID, cmd.TeamID, cmd.UserID), m.OrgKey(cmd.OrgID),
			&orgv1.TeamMember{OrgId: cmd.OrgID, TeamId: cmd.TeamID, UserId: cmd.UserID})
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.AddTeamMemberResponse{Written: c.RecordVersion()}), nil
}

// RemoveTeamMember removes a user from a team.
func (s *Service) RemoveTeamMember(ctx context.Context, req *connect.Request[orgv1.RemoveTeamMemberRequest]) (*connect.Response[orgv1.RemoveTeamMemberResponse], error) {
	cmd := teamMemberCmd{OrgID: req.Msg.GetOrgId(), TeamID: req.Msg.GetTeamId(), UserID: req.Msg.GetUserId()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	c, err := s.write(ctx, orgv1connect.OrgServiceRemoveTeamMemberProcedure, memberCmd{OrgID: cmd.OrgID, UserID: cmd.UserID, Role: "member"}, func(ctx context.Context, tx *engine.Tx) (engine.Change, error) {
		key := m.TeamMemberKey(cmd.OrgID, cmd.TeamID, cmd.UserID)
		if _, err := tx.Get(ctx, key, nil); err != nil {
			return engine.Change{}, err
		}
		role, err := m.Role(ctx, access.TxFacts(tx), cmd.OrgID, cmd.UserID)
		if err != nil {
			return engine.Change{}, err
		}
		teams, err := m.TeamsOf(ctx, tx, cmd.OrgID, cmd.UserID)
		if err != nil {
			return engine.Change{}, err
		}
		// Leave the team's channels the user's role does not admit them to
		// on its own, before the team membership change (the last one).
		left := slices.DeleteFunc(teams, func(t string) bool { return t == cmd.TeamID })
		if err := m.PruneChannels(ctx, tx, cmd.OrgID, cmd.UserID, m.Standing{Role: role, Teams: left}); err != nil {
			return engine.Change{}, err
		}
		if err := m.UpdateUserOrgs(ctx, tx, cmd.UserID, func(idx *orgv1.UserOrgs) { m.SetTeam(idx, cmd.OrgID, cmd.TeamID, false) }); err != nil {
			return engine.Change{}, err
		}
		return tx.Delete(ctx, key)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&orgv1.RemoveTeamMemberResponse{Written: c.RecordVersion()}), nil
}
