package services

import (
	"testing"

	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/services/edge"
)

// Every procedure has a rate class: reads and streams none, the rest the
// class docs/SECURITY.md names.
func TestRateClasses(t *testing.T) {
	t.Parallel()
	classes := RateClasses()
	for _, p := range Procedures() {
		if _, ok := classes[p]; !ok {
			t.Errorf("%s has no rate class", p)
		}
	}
	for proc, want := range map[string]edge.RateClass{
		syncv1connect.SyncServiceSubscribeProcedure:           edge.RateNone,
		syncv1connect.SyncServiceGetProcedure:                 edge.RateNone,
		accessv1connect.AccessServiceWatchProcedure:           edge.RateNone,
		authv1connect.AuthServiceWhoAmIProcedure:              edge.RateNone,
		channelv1connect.ChannelServiceListChannelsProcedure:  edge.RateNone,
		messagev1connect.MessageServiceListMessagesProcedure:  edge.RateNone,
		orgv1connect.OrgServiceCreateOrgProcedure:             edge.RateCreate,
		orgv1connect.OrgServiceCreateTeamProcedure:            edge.RateCreate,
		channelv1connect.ChannelServiceCreateChannelProcedure: edge.RateCreate,
		messagev1connect.MessageServiceSendTypingProcedure:    edge.RateTyping,
		messagev1connect.MessageServicePostMessageProcedure:   edge.RateMessages,
		messagev1connect.MessageServiceEditMessageProcedure:   edge.RateMessages,
		messagev1connect.MessageServiceDeleteMessageProcedure: edge.RateMessages,
		colorv1connect.ColorServiceSetColorProcedure:          edge.RateWrites,
		userv1connect.UserServiceSetAvatarUrlProcedure:        edge.RateWrites,
		orgv1connect.OrgServiceAddMemberProcedure:             edge.RateWrites,
		channelv1connect.ChannelServiceJoinChannelProcedure:   edge.RateWrites,
	} {
		if got := classes[proc]; got != want {
			t.Errorf("%s: class %q, want %q", proc, got, want)
		}
	}
}
