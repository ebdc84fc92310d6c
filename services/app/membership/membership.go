// Package membership holds what the organization, channel and message
// services share: record keys, the roles of members, what admits a member
// to a channel (Standing), and the read rules of organization, invitation
// and channel scopes. Memberships are records in the scope
// they grant (`orgmember/<org>/<user>` in `org/<org>`, `chanmember/<ch>/<user>`
// in `channel/<ch>`), so a stream on that scope sees the membership change
// in seq order and loses access before any later change.
package membership

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/authz"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/sync/engine"
)

// OrgKey is the key (and scope) of an organization.
func OrgKey(org string) string { return "org/" + org }

// OrgMemberKey is the key of a user's membership of org (scope org/<org>).
func OrgMemberKey(org, user string) string { return "orgmember/" + org + "/" + user }

// TeamKey is the key of a team of org (scope org/<org>).
func TeamKey(org, team string) string { return "team/" + org + "/" + team }

// TeamMemberKey is the key of a user's membership of a team (scope
// org/<org>).
func TeamMemberKey(org, team, user string) string {
	return "teammember/" + org + "/" + team + "/" + user
}

// UserOrgsKey is the key (and scope) of a user's organizations index.
func UserOrgsKey(user string) string { return "userorgs/" + user }

// InvitationKey is the key of user's pending invitation to org, in the
// invitee's scope userorgs/<user>.
func InvitationKey(user, org string) string { return "invitation/" + user + "/" + org }

// OrgInvitationKey is the organization's copy of user's pending invitation
// to org, in scope orginvitations/<org>.
func OrgInvitationKey(org, user string) string { return "orginvitation/" + org + "/" + user }

// OrgInvitationsScope is the scope of org's pending invitations, read by
// its owners and admins.
func OrgInvitationsScope(org string) string { return "orginvitations/" + org }

// ChannelKey is the key (and scope) of a channel.
func ChannelKey(ch string) string { return "channel/" + ch }

// ChanMemberKey is the key of a user's membership of channel ch (scope
// channel/<ch>).
func ChanMemberKey(ch, user string) string { return "chanmember/" + ch + "/" + user }

// MessageKey is the key of a message of channel ch (scope channel/<ch>).
func MessageKey(ch, id string) string { return "message/" + ch + "/" + id }

// MessagePrefix is the key prefix of every message of channel ch.
func MessagePrefix(ch string) string { return "message/" + ch + "/" }

// ChannelID builds a channel id: the organization's id, ".", a suffix.
func ChannelID(org, suffix string) string { return org + "." + suffix }

// OrgOfChannel returns the organization id a channel id starts with.
func OrgOfChannel(ch string) (string, bool) {
	org, rest, ok := strings.Cut(ch, ".")
	return org, ok && org != "" && rest != ""
}

// ChannelOfMessage returns the channel of a message key.
func ChannelOfMessage(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "message/")
	if !ok {
		return "", false
	}
	ch, id, ok := strings.Cut(rest, "/")
	return ch, ok && ch != "" && id != ""
}

// SelfScoped are the key types that are their own scope.
var SelfScoped = []string{"org", "channel", "userorgs"}

// Under maps key types to the scope type of their parent.
var Under = map[string]string{"orgmember": "org", "team": "org", "teammember": "org", "chanmember": "channel", "message": "channel",
	"invitation": "userorgs", "orginvitation": "orginvitations"}

// Role returns user's role in org, or ROLE_UNSPECIFIED if not a member.
func Role(ctx context.Context, f authz.Facts, org, user string) (orgv1.Role, error) {
	m := &orgv1.Member{}
	found, err := f.Get(ctx, OrgMemberKey(org, user), m)
	if err != nil || !found {
		return orgv1.Role_ROLE_UNSPECIFIED, err
	}
	return m.GetRole(), nil
}

// IsManager reports whether role may manage the organization.
func IsManager(r orgv1.Role) bool { return r == orgv1.Role_ROLE_OWNER || r == orgv1.Role_ROLE_ADMIN }

// InTeam reports whether user is a member of team in org.
func InTeam(ctx context.Context, f authz.Facts, org, team, user string) (bool, error) {
	return f.Get(ctx, TeamMemberKey(org, team, user), &orgv1.TeamMember{})
}

// InChannel reports whether user is a member of channel ch whose standing
// in the channel's organization still admits them (Standing.Admits): a
// membership left behind by a removal or a demotion grants nothing.
func InChannel(ctx context.Context, f authz.Facts, ch, user string) (bool, error) {
	in, err := f.Get(ctx, ChanMemberKey(ch, user), &channelv1.ChannelMember{})
	if err != nil || !in {
		return false, err
	}
	return stands(ctx, f, ch, user)
}

// UpdateUserOrgs applies fn to user's organizations index in tx.
func UpdateUserOrgs(ctx context.Context, tx *engine.Tx, user string, fn func(*orgv1.UserOrgs)) error {
	key := UserOrgsKey(user)
	idx := &orgv1.UserOrgs{}
	if _, err := tx.Get(ctx, key, idx); err != nil && !errors.Is(err, engine.ErrNotFound) {
		return err
	}
	idx.UserId = user
	fn(idx)
	_, err := tx.Put(ctx, key, key, idx)
	return err
}

// SetOrgRole records user's role in org in the index (adding the org).
func SetOrgRole(idx *orgv1.UserOrgs, org string, role orgv1.Role) {
	for _, o := range idx.Orgs {
		if o.GetOrgId() == org {
			o.Role = role
			return
		}
	}
	idx.Orgs = append(idx.Orgs, &orgv1.OrgRole{OrgId: org, Role: role})
}

// DropOrg removes org (and its teams) from the index.
func DropOrg(idx *orgv1.UserOrgs, org string) {
	idx.Orgs = slices.DeleteFunc(idx.Orgs, func(o *orgv1.OrgRole) bool { return o.GetOrgId() == org })
}

// SetTeam adds or removes team of org in the index.
func SetTeam(idx *orgv1.UserOrgs, org, team string, in bool) {
	for _, o := range idx.Orgs {
		if o.GetOrgId() != org {
			continue
		}
		o.TeamIds = slices.DeleteFunc(o.TeamIds, func(t string) bool { return t == team })
		if in {
			o.TeamIds = append(o.TeamIds, team)
		}
	}
}

// ProfileReadRule is the Briteback rule for `user/<id>` profiles: a user
// reads their own; another user's only if they share an organization, and
// if either is a guest there they must also share a team. It reads both
// users' organization indexes, so a membership change re-checks open
// profile streams live.
func ProfileReadRule() authz.ReadRule {
	return authz.ReadRule{Type: "user", Description: "the user; people who share an organization with them (if either is a guest there: a team too)",
		Check: func(ctx context.Context, p *authz.Principal, id string, f authz.Facts) error {
			if p.ID == id {
				return nil
			}
			mine, theirs := &orgv1.UserOrgs{}, &orgv1.UserOrgs{}
			if _, err := f.Get(ctx, UserOrgsKey(p.ID), mine); err != nil {
				return err
			}
			if _, err := f.Get(ctx, UserOrgsKey(id), theirs); err != nil {
				return err
			}
			for _, a := range mine.GetOrgs() {
				for _, b := range theirs.GetOrgs() {
					if a.GetOrgId() != b.GetOrgId() {
						continue
					}
					if a.GetRole() != orgv1.Role_ROLE_GUEST && b.GetRole() != orgv1.Role_ROLE_GUEST {
						return nil
					}
					for _, t := range a.GetTeamIds() {
						if slices.Contains(b.GetTeamIds(), t) {
							return nil
						}
					}
				}
			}
			return authz.Hide("profile-shared-org", "no shared organization (or team, for guests)")
		}}
}

// UserOrgsReadRule lets a user read their own organizations index and
// pending invitations (scope userorgs/<id>).
func UserOrgsReadRule() authz.ReadRule {
	return authz.ReadRule{Type: "userorgs", Description: "the user themselves",
		Check: func(_ context.Context, p *authz.Principal, id string, _ authz.Facts) error {
			if p.ID == id {
				return nil
			}
			return authz.Hide("userorgs-self", "only the user reads their organizations index")
		}}
}

// ReadRules are the read rules of organization and channel scopes.
func ReadRules() []authz.ReadRule {
	return []authz.ReadRule{
		{Type: "org", Description: "members of the organization (live: removal revokes)",
			Check: func(ctx context.Context, p *authz.Principal, id string, f authz.Facts) error {
				r, err := Role(ctx, f, id, p.ID)
				if err != nil {
					return err
				}
				if r == orgv1.Role_ROLE_UNSPECIFIED {
					return authz.Hide("org-member", "not a member of org "+id)
				}
				return nil
			}},
		{Type: "orginvitations", Description: "owners and admins of the organization (live: losing the role revokes)",
			Check: func(ctx context.Context, p *authz.Principal, id string, f authz.Facts) error {
				r, err := Role(ctx, f, id, p.ID)
				if err != nil {
					return err
				}
				if !IsManager(r) {
					return authz.Hide("org-manager", "not an owner or admin of org "+id)
				}
				return nil
			}},
		{Type: "channel", Description: "members of the channel whose role and teams still admit them (live: leaving, removal from the organization or the team, or a demotion revokes)",
			Check: func(ctx context.Context, p *authz.Principal, id string, f authz.Facts) error {
				in, err := InChannel(ctx, f, id, p.ID)
				if err != nil {
					return err
				}
				if !in {
					return authz.Hide("channel-member", "not a member of channel "+id)
				}
				return nil
			}},
	}
}
