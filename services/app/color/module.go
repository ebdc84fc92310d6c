package color

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	"github.com/sluicehq/sluice/services/kit"
)

// Module is the ColorService of the reference app (the color demo), with
// the read rules of its records.
func Module() kit.Module {
	return kit.Module{
		Name: colorv1connect.ColorServiceName,
		Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			return colorv1connect.NewColorServiceHandler(NewService(d.Steps()), opts...)
		},
		Policies:   Policies(),
		ReadRules:  ReadRules(),
		SelfScoped: SelfScoped(),
	}
}
