// Package user is the UserService: a user changes their own profile, the
// record `user/<id>`.
package user

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	userv1 "github.com/sluicehq/sluice/gen/sluice/user/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync"
)

// Key returns the record key (and scope) of a user's profile.
func Key(userID string) string { return "user/" + userID }

// Service implements sluice.user.v1.UserService.
type Service struct {
	store    *sync.Store
	policies *authz.Table
	valid    *edge.Validator
}

var _ userv1connect.UserServiceHandler = (*Service)(nil)

// NewService returns the UserService.
func NewService(store *sync.Store, policies *authz.Table, valid *edge.Validator) *Service {
	return &Service{store: store, policies: policies, valid: valid}
}

// ownProfile admits only the owner of the profile. Handlers take the user
// id from the session, so this holds by construction; the check keeps it
// true if a handler ever changes.
func ownProfile(_ context.Context, p *authz.Principal, r authz.Resource, _ authz.Facts) error {
	return authz.RequireUser(p, r.Owner)
}

// Policies returns the policy of every UserService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: userv1connect.UserServiceSetAvatarUrlProcedure, Action: "user.set_avatar_url",
			Description: "an authenticated user, on their own profile only", Check: ownProfile},
		{Procedure: userv1connect.UserServiceSetDisplayNameProcedure, Action: "user.set_display_name",
			Description: "an authenticated user, on their own profile only", Check: ownProfile},
	}
}

type setAvatarURL struct {
	AvatarURL string `field:"avatar_url" validate:"required,maxbytes=2048,httpurl"`
}

// SetAvatarUrl sets the caller's avatar URL.
func (s *Service) SetAvatarUrl(ctx context.Context, req *connect.Request[userv1.SetAvatarUrlRequest]) (*connect.Response[userv1.SetAvatarUrlResponse], error) {
	cmd := setAvatarURL{AvatarURL: req.Msg.GetAvatarUrl()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	u, c, err := s.update(ctx, userv1connect.UserServiceSetAvatarUrlProcedure, func(u *userv1.User) { u.AvatarUrl = cmd.AvatarURL })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&userv1.SetAvatarUrlResponse{Written: c.RecordVersion(), User: u}), nil
}

type setDisplayName struct {
	DisplayName string `field:"display_name" validate:"required,utf8,nocontrol,min=1,max=64"`
}

// SetDisplayName sets the caller's display name.
func (s *Service) SetDisplayName(ctx context.Context, req *connect.Request[userv1.SetDisplayNameRequest]) (*connect.Response[userv1.SetDisplayNameResponse], error) {
	cmd := setDisplayName{DisplayName: req.Msg.GetDisplayName()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	u, c, err := s.update(ctx, userv1connect.UserServiceSetDisplayNameProcedure, func(u *userv1.User) { u.DisplayName = cmd.DisplayName })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&userv1.SetDisplayNameResponse{Written: c.RecordVersion(), User: u}), nil
}

// update authorizes procedure on the caller's own profile and applies
// mutate to it in one transaction.
func (s *Service) update(ctx context.Context, procedure string, mutate func(*userv1.User)) (*userv1.User, sync.Change, error) {
	p := authz.PrincipalFrom(ctx)
	if p == nil {
		return nil, sync.Change{}, authz.ErrUnauthenticated
	}
	key := Key(p.ID)
	if err := s.policies.Authorize(ctx, procedure, authz.Resource{Key: key, Scope: key, Owner: p.ID}); err != nil {
		return nil, sync.Change{}, err
	}
	changes, err := s.store.Update(ctx, p.ID, func(ctx context.Context, tx *sync.Tx) error {
		u := &userv1.User{}
		if _, err := tx.Get(ctx, key, u); err != nil && !errors.Is(err, sync.ErrNotFound) {
			return err
		}
		u.Id = p.ID
		mutate(u)
		_, err := tx.Put(ctx, key, key, u)
		return err
	})
	if err != nil {
		return nil, sync.Change{}, err
	}
	// Built from the change, so an idempotent replay answers the same.
	u := &userv1.User{}
	if err := changes[0].DecodeInto(u); err != nil {
		return nil, sync.Change{}, err
	}
	return u, changes[0], nil
}
