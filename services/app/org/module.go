package org

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/services/kit"
)

// Module is the OrgService of the reference app.
func Module() kit.Module {
	return kit.Module{
		Name: orgv1connect.OrgServiceName,
		Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			return orgv1connect.NewOrgServiceHandler(NewService(d.Store, d.Policies, d.Valid), opts...)
		},
		Policies: Policies(),
	}
}
