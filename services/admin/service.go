// Package admin is the AdminService: procedures for backend processes
// holding a service credential. Every procedure here is marked server_only
// in the proto, so users are refused before any handler runs.
package admin

import (
	"context"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	adminv1 "github.com/sluicehq/sluice/gen/sluice/admin/v1"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	"github.com/sluicehq/sluice/services/edge"
)

// SessionRevoker revokes every session of a user.
type SessionRevoker interface {
	RevokeUser(ctx context.Context, userID string) (int, error)
}

// Service implements sluice.admin.v1.AdminService.
type Service struct {
	sessions SessionRevoker
	policies *authz.Table
	valid    *edge.Validator
}

var _ adminv1connect.AdminServiceHandler = (*Service)(nil)

// NewService returns the AdminService.
func NewService(sessions SessionRevoker, policies *authz.Table, valid *edge.Validator) *Service {
	return &Service{sessions: sessions, policies: policies, valid: valid}
}

// Policies returns the policy of every AdminService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: adminv1connect.AdminServiceRevokeUserSessionsProcedure, Action: "admin.revoke_user_sessions",
			Description: "backend processes; writes are attributed to the service"},
	}
}

type revokeUserCmd struct {
	UserID string `field:"user_id" validate:"required,maxbytes=128,utf8,nocontrol,userid"`
}

// RevokeUserSessions revokes every session of a user.
func (s *Service) RevokeUserSessions(ctx context.Context, req *connect.Request[adminv1.RevokeUserSessionsRequest]) (*connect.Response[adminv1.RevokeUserSessionsResponse], error) {
	cmd := revokeUserCmd{UserID: req.Msg.GetUserId()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	if err := s.policies.Authorize(ctx, adminv1connect.AdminServiceRevokeUserSessionsProcedure, authz.Resource{Owner: cmd.UserID}); err != nil {
		return nil, err
	}
	n, err := s.sessions.RevokeUser(ctx, cmd.UserID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.RevokeUserSessionsResponse{Revoked: int32(n)}), nil
}
