package message

import (
	"net/http"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	"github.com/sluicehq/sluice/services/edge"
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
		// Typing signals and message writes have limits of their own.
		RateClasses: map[string]edge.RateClass{
			messagev1connect.MessageServiceSendTypingProcedure:    edge.RateTyping,
			messagev1connect.MessageServicePostMessageProcedure:   edge.RateMessages,
			messagev1connect.MessageServiceEditMessageProcedure:   edge.RateMessages,
			messagev1connect.MessageServiceDeleteMessageProcedure: edge.RateMessages,
		},
	}
}
