package message

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/services/syncsvc"
)

// Module is the MessageService of the reference app.
func Module() kit.Module {
	return kit.Module{
		Name: messagev1connect.MessageServiceName,
		Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			return messagev1connect.NewMessageServiceHandler(NewService(d.Store, d.Policies, d.Loader, d.Hub, d.Valid, syncsvc.NewLister(d.Store, d.Reads, d.Loader)), opts...)
		},
		Policies: Policies(),
	}
}
