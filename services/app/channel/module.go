package channel

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	"github.com/sluicehq/sluice/services/kit"
)

// Module is the ChannelService of the reference app. Channels have
// presence: their streams learn who else is online.
func Module() kit.Module {
	return kit.Module{
		Name: channelv1connect.ChannelServiceName,
		Mount: func(d *kit.Deps, opts ...connect.HandlerOption) (string, http.Handler) {
			return channelv1connect.NewChannelServiceHandler(NewService(d.Store, d.Policies, d.Loader, d.Valid), opts...)
		},
		Policies: Policies(),
		Presence: []string{"channel"},
	}
}
