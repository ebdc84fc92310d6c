package notify

import (
	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Module carries the read rule and key scopes of notifications
// (`notification/<user>/<id>` in scope `notifications/<user>`). It serves
// no RPC; the notification jobs are registered with the Worker.
func Module() kit.Module {
	return kit.Module{
		ReadRules: []authz.ReadRule{ReadRule()},
		Under:     map[string]string{"notification": "notifications"},
		// Mentions and channel creations become notification records and
		// e-mails in the background.
		Jobs: func(d kit.JobDeps) map[string]engine.JobHandler {
			return Handlers(d.Store, d.Mail, d.Logger)
		},
	}
}
