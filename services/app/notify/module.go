package notify

import (
	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/kit"
)

// Module carries the read rule and key scopes of notifications
// (`notification/<user>/<id>` in scope `notifications/<user>`). It serves
// no RPC; the notification jobs are registered with the Worker.
func Module() kit.Module {
	return kit.Module{
		ReadRules: []authz.ReadRule{ReadRule()},
		Under:     map[string]string{"notification": "notifications"},
	}
}
