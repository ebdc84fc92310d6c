package membership

import (
	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/kit"
)

// Module carries the reference app's data model of organizations, teams
// and channels: their read rules (including who may read a user's
// profile: the user, and people sharing an organization) and the scopes
// of their keys. It serves no RPC.
func Module() kit.Module {
	return kit.Module{
		ReadRules:  append([]authz.ReadRule{ProfileReadRule(), UserOrgsReadRule()}, ReadRules()...),
		SelfScoped: SelfScoped,
		Under:      Under,
	}
}
