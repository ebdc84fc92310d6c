// Package color is the color demo (deepstream's "Dynamic Permissions using
// Valve"): users set the `global-color` record only to colors their
// `permissions/<user id>` record allows; admins toggle those permissions.
package color

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Record keys of the demo.
const (
	GlobalColorKey    = "global-color"
	permissionsPrefix = "permissions/"
)

// PermissionsKey returns the key of a user's permission record.
func PermissionsKey(userID string) string { return permissionsPrefix + userID }

// Service implements sluice.color.v1.ColorService.
type Service struct {
	steps kit.Steps
}

var _ colorv1connect.ColorServiceHandler = (*Service)(nil)

// NewService returns the ColorService.
func NewService(steps kit.Steps) *Service {
	return &Service{steps: steps}
}

// colorNames are the colors a client may name, as policies see them.
var colorNames = map[colorv1.Color]string{
	colorv1.Color_COLOR_RED:   "red",
	colorv1.Color_COLOR_GREEN: "green",
	colorv1.Color_COLOR_BLUE:  "blue",
}

// allows reports whether perm allows the named color.
func allows(perm *colorv1.Permissions, color string) bool {
	switch color {
	case "red":
		return perm.GetRed()
	case "green":
		return perm.GetGreen()
	case "blue":
		return perm.GetBlue()
	}
	return false
}

// setColorAllowed is the Valve rule: the caller's permission record must
// allow the color.
func setColorAllowed(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	color := r.Params["color"]
	perm := &colorv1.Permissions{}
	found, err := f.Get(ctx, PermissionsKey(p.ID), perm)
	if err != nil {
		return err
	}
	if !found || !allows(perm, color) {
		return authz.Deny("color-permission", "permissions/"+p.ID+" does not allow "+color)
	}
	return nil
}

func requireAdmin(_ context.Context, p *authz.Principal, _ authz.Resource, _ authz.Facts) error {
	return authz.RequireRole(p, "admin")
}

// Policies returns the policy of every ColorService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: colorv1connect.ColorServiceSetColorProcedure, Action: "color.set_color",
			Description: "an authenticated user, to a color their permissions/<id> record allows",
			Check:       setColorAllowed,
			Resolve: func(_ *authz.Principal, q authz.Question) authz.Resource {
				return authz.Resource{Key: GlobalColorKey, Scope: GlobalColorKey, Params: map[string]string{"color": q.Params["color"]}}
			}},
		{Procedure: colorv1connect.ColorServiceSetPermissionProcedure, Action: "color.set_permission",
			Description: "admins only", Check: requireAdmin,
			Resolve: func(_ *authz.Principal, q authz.Question) authz.Resource {
				return authz.Resource{Key: PermissionsKey(q.Params["user_id"]), Params: q.Params}
			}},
	}
}

// ReadRules returns the read rules of the demo's scopes.
func ReadRules() []authz.ReadRule {
	return []authz.ReadRule{
		{Type: "global-color", Description: "any authenticated user",
			Check: func(context.Context, *authz.Principal, string, authz.Facts) error { return nil }},
		{Type: "permissions", Description: "the user themselves and admins",
			Check: func(_ context.Context, p *authz.Principal, id string, _ authz.Facts) error {
				if p.ID == id || p.HasRole("admin") {
					return nil
				}
				return authz.Hide("permissions-self-or-admin", "only the user and admins may read permissions/"+id)
			}},
	}
}

// SelfScoped lists the demo's key types whose records are their own scope.
func SelfScoped() []string { return []string{"global-color", "permissions"} }

type setColorCmd struct {
	Color string `field:"color" validate:"required,oneof=red green blue"`
}

// SetColor sets global-color, checking the caller's permission record in
// the same transaction (locked), so a concurrent revoke cannot be overtaken.
func (s *Service) SetColor(ctx context.Context, req *connect.Request[colorv1.SetColorRequest]) (*connect.Response[colorv1.SetColorResponse], error) {
	cmd := setColorCmd{Color: colorNames[req.Msg.GetColor()]}
	changes, err := s.steps.Write(ctx, colorv1connect.ColorServiceSetColorProcedure, cmd,
		authz.Question{Params: map[string]string{"color": cmd.Color}},
		func(ctx context.Context, c kit.Call) error {
			_, err := c.Tx.Put(ctx, c.Resource.Key, c.Resource.Scope, &colorv1.GlobalColor{Color: req.Msg.GetColor()})
			return err
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&colorv1.SetColorResponse{Written: changes[0].RecordVersion()}), nil
}

type setPermissionCmd struct {
	UserID string `field:"user_id" validate:"required,maxbytes=128,utf8,nocontrol,excludesall=/ ,userid"`
	Color  string `field:"color" validate:"required,oneof=red green blue"`
}

// SetPermission allows or forbids a color for a user (admins only).
func (s *Service) SetPermission(ctx context.Context, req *connect.Request[colorv1.SetPermissionRequest]) (*connect.Response[colorv1.SetPermissionResponse], error) {
	cmd := setPermissionCmd{UserID: strings.TrimSpace(req.Msg.GetUserId()), Color: colorNames[req.Msg.GetColor()]}
	if cmd.UserID != req.Msg.GetUserId() {
		return nil, edge.Invalid("user_id", "must not have leading or trailing spaces")
	}
	key := PermissionsKey(cmd.UserID)
	changes, err := s.steps.Write(ctx, colorv1connect.ColorServiceSetPermissionProcedure, cmd,
		authz.Question{Params: map[string]string{"user_id": cmd.UserID}},
		func(ctx context.Context, c kit.Call) error {
			perm := &colorv1.Permissions{}
			if _, err := c.Tx.Get(ctx, key, perm); err != nil && !errors.Is(err, engine.ErrNotFound) {
				return err
			}
			perm.UserId = cmd.UserID
			switch cmd.Color {
			case "red":
				perm.Red = req.Msg.GetAllowed()
			case "green":
				perm.Green = req.Msg.GetAllowed()
			case "blue":
				perm.Blue = req.Msg.GetAllowed()
			}
			_, err := c.Tx.Put(ctx, key, key, perm)
			return err
		})
	if err != nil {
		return nil, err
	}
	perm := &colorv1.Permissions{}
	if err := changes[0].DecodeInto(perm); err != nil {
		return nil, err
	}
	return connect.NewResponse(&colorv1.SetPermissionResponse{Written: changes[0].RecordVersion(), Permissions: perm}), nil
}
