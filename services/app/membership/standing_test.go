package membership

import (
	"testing"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
)

// What admits a user to a channel: role × teams × kind of channel.
func TestStandingAdmits(t *testing.T) {
	t.Parallel()
	orgWide := &channelv1.Channel{Id: "o.c", OrgId: "o"}
	team := &channelv1.Channel{Id: "o.t", OrgId: "o", TeamId: "t1"}
	const (
		none   = orgv1.Role_ROLE_UNSPECIFIED
		owner  = orgv1.Role_ROLE_OWNER
		admin  = orgv1.Role_ROLE_ADMIN
		member = orgv1.Role_ROLE_MEMBER
		guest  = orgv1.Role_ROLE_GUEST
	)
	for _, c := range []struct {
		role  orgv1.Role
		teams []string
		ch    *channelv1.Channel
		want  bool
	}{
		{none, []string{"t1"}, orgWide, false},
		{none, []string{"t1"}, team, false},
		{owner, nil, orgWide, true},
		{owner, nil, team, true},
		{admin, nil, team, true},
		{member, nil, orgWide, true},
		{member, nil, team, false},
		{member, []string{"t2"}, team, false},
		{member, []string{"t2", "t1"}, team, true},
		{guest, []string{"t1"}, orgWide, false},
		{guest, []string{"t1"}, team, true},
		{guest, nil, team, false},
	} {
		if got := (Standing{Role: c.role, Teams: c.teams}).Admits(c.ch); got != c.want {
			t.Errorf("%v in %v, channel of team %q: %v, want %v", c.role, c.teams, c.ch.GetTeamId(), got, c.want)
		}
	}
}
