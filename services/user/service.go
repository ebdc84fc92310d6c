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
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Key returns the record key (and scope) of a user's profile.
func Key(userID string) string { return "user/" + userID }

// Service implements sluice.user.v1.UserService.
type Service struct {
	steps kit.Steps
}

var _ userv1connect.UserServiceHandler = (*Service)(nil)

// NewService returns the UserService.
func NewService(steps kit.Steps) *Service {
	return &Service{steps: steps}
}

// ownProfile admits only the owner of the profile. Handlers take the user
// id from the session, so this holds by construction; the check keeps it
// true if a handler ever changes.
func ownProfile(_ context.Context, p *authz.Principal, r authz.Resource, _ authz.Facts) error {
	return authz.RequireUser(p, r.Owner)
}

// ownResource is the resource of every UserService call: the caller's own
// profile. Handlers and AccessService both resolve it here.
func ownResource(p *authz.Principal, _ authz.Question) authz.Resource {
	if p == nil {
		return authz.Resource{} // anonymous: the policy refuses before this matters
	}
	key := Key(p.ID)
	return authz.Resource{Key: key, Scope: key, Owner: p.ID}
}

// Policies returns the policy of every UserService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: userv1connect.UserServiceSetAvatarUrlProcedure, Action: "user.set_avatar_url",
			Description: "an authenticated user, on their own profile only", Check: ownProfile, Resolve: ownResource},
		{Procedure: userv1connect.UserServiceSetDisplayNameProcedure, Action: "user.set_display_name",
			Description: "an authenticated user, on their own profile only", Check: ownProfile, Resolve: ownResource},
	}
}

type setAvatarURL struct {
	AvatarURL string `field:"avatar_url" validate:"required,maxbytes=2048,httpurl"`
}

// SetAvatarUrl sets the caller's avatar URL.
func (s *Service) SetAvatarUrl(ctx context.Context, req *connect.Request[userv1.SetAvatarUrlRequest]) (*connect.Response[userv1.SetAvatarUrlResponse], error) {
	cmd := setAvatarURL{AvatarURL: req.Msg.GetAvatarUrl()}
	u, c, err := s.update(ctx, userv1connect.UserServiceSetAvatarUrlProcedure, cmd, func(u *userv1.User) { u.AvatarUrl = cmd.AvatarURL })
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
	u, c, err := s.update(ctx, userv1connect.UserServiceSetDisplayNameProcedure, cmd, func(u *userv1.User) { u.DisplayName = cmd.DisplayName })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&userv1.SetDisplayNameResponse{Written: c.RecordVersion(), User: u}), nil
}

// update validates cmd, authorizes procedure on the caller's own profile
// and applies mutate to it in one transaction.
func (s *Service) update(ctx context.Context, procedure string, cmd any, mutate func(*userv1.User)) (*userv1.User, engine.Change, error) {
	changes, err := s.steps.Write(ctx, procedure, cmd, authz.Question{}, func(ctx context.Context, c kit.Call) error {
		key := c.Resource.Key
		u := &userv1.User{}
		if _, err := c.Tx.Get(ctx, key, u); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		u.Id = c.Principal.ID
		mutate(u)
		_, err := c.Tx.Put(ctx, key, c.Resource.Scope, u)
		return err
	})
	if err != nil {
		return nil, engine.Change{}, err
	}
	// Built from the change, so an idempotent replay answers the same.
	u := &userv1.User{}
	if err := changes[0].DecodeInto(u); err != nil {
		return nil, engine.Change{}, err
	}
	return u, changes[0], nil
}
