package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/authz"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/sync/engine"
)

// Standing is what admits a user to the channels of one organization: their
// role there (ROLE_UNSPECIFIED: not a member) and the teams they are in.
type Standing struct {
	Role  orgv1.Role
	Teams []string
}

// Admits reports whether s admits its user to channel ch: a member of the
// organization; for a team channel, a member of the team or an owner or
// admin (who may create a team channel without being in the team); for
// any other channel, anyone but a guest. A channel membership that its
// user's standing no longer admits grants nothing.
func (s Standing) Admits(ch *channelv1.Channel) bool {
	switch {
	case s.Role == orgv1.Role_ROLE_UNSPECIFIED:
		return false
	case ch.GetTeamId() != "":
		return IsManager(s.Role) || slices.Contains(s.Teams, ch.GetTeamId())
	default:
		return s.Role != orgv1.Role_ROLE_GUEST
	}
}

// stands reports whether user's standing in the organization of channel id
// still admits them to it, from facts: the channel record, the user's
// organization membership and, for a team channel, their team membership.
// Reading them makes a stream's access depend on each, so a change of any
// of them re-checks the stream live.
func stands(ctx context.Context, f authz.Facts, id, user string) (bool, error) {
	ch := &channelv1.Channel{}
	found, err := f.Get(ctx, ChannelKey(id), ch)
	if err != nil || !found {
		return false, err
	}
	org, _ := OrgOfChannel(id)
	role, err := Role(ctx, f, org, user)
	if err != nil {
		return false, err
	}
	st := Standing{Role: role}
	if ch.GetTeamId() != "" && role != orgv1.Role_ROLE_UNSPECIFIED && !IsManager(role) {
		in, err := InTeam(ctx, f, org, ch.GetTeamId(), user)
		if err != nil {
			return false, err
		}
		if in {
			st.Teams = []string{ch.GetTeamId()}
		}
	}
	return st.Admits(ch), nil
}

// TeamsOf returns the teams of org that user is in, as tx sees them.
func TeamsOf(ctx context.Context, tx *engine.Tx, org, user string) ([]string, error) {
	prefix, suffix := "teammember/"+org+"/", "/"+user
	keys, err := tx.KeysMatching(ctx, prefix, suffix)
	if err != nil {
		return nil, err
	}
	teams := make([]string, 0, len(keys))
	for _, k := range keys {
		teams = append(teams, strings.TrimSuffix(strings.TrimPrefix(k, prefix), suffix))
	}
	return teams, nil
}

// PruneChannels deletes, in tx, every membership of user in the channels
// of org that st does not admit (Standing.Admits), however many: one
// query finds the memberships, one reads their channels, and each deletion
// is a tombstone in the channel's scope, which revokes the user's open
// streams on it live. A zero st removes the user from every channel of
// org.
func PruneChannels(ctx context.Context, tx *engine.Tx, org, user string, st Standing) error {
	prefix, suffix := "chanmember/"+org+".", "/"+user
	keys, err := tx.KeysMatching(ctx, prefix, suffix)
	if err != nil || len(keys) == 0 {
		return err
	}
	drop := keys
	if st.Role != orgv1.Role_ROLE_UNSPECIFIED {
		chanKeys := make([]string, len(keys))
		for i, k := range keys {
			chanKeys[i] = ChannelKey(org + "." + strings.TrimSuffix(strings.TrimPrefix(k, prefix), suffix))
		}
		recs, err := tx.Records(ctx, chanKeys)
		if err != nil {
			return err
		}
		admitted := make(map[string]bool, len(recs))
		for i := range recs {
			ch := &channelv1.Channel{}
			if err := recs[i].DecodeInto(ch); err != nil {
				return fmt.Errorf("prune channels: %w", err)
			}
			admitted[recs[i].Key] = !recs[i].Deleted && st.Admits(ch)
		}
		drop = nil
		for i, k := range keys {
			if !admitted[chanKeys[i]] {
				drop = append(drop, k)
			}
		}
	}
	for _, k := range drop {
		// A membership the user left meanwhile is gone already: fine.
		if _, err := tx.Delete(ctx, k); err != nil && !errors.Is(err, engine.ErrNotFound) {
			return err
		}
	}
	return nil
}
