// Package channel is the ChannelService: channels in an organization and
// their members.
package channel

import (
	"context"
	"errors"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	"github.com/sluicehq/sluice/services/access"
	m "github.com/sluicehq/sluice/services/app/membership"
	"github.com/sluicehq/sluice/services/app/notify"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/sync/engine"
)

// Service implements sluice.channel.v1.ChannelService.
type Service struct {
	store    *engine.Store
	policies *authz.Table
	loader   *access.Loader
	valid    *edge.Validator
}

var _ channelv1connect.ChannelServiceHandler = (*Service)(nil)

// steps are the shared steps of the service's mutating handlers.
func (s *Service) steps() kit.Steps {
	return kit.Steps{Store: s.store, Policies: s.policies, Valid: s.valid}
}

// NewService returns the ChannelService; loader gives the facts of
// read-only calls.
func NewService(store *engine.Store, policies *authz.Table, loader *access.Loader, valid *edge.Validator) *Service {
	return &Service{store: store, policies: policies, loader: loader, valid: valid}
}

// mayEnter decides who may create or join a channel: for a team channel,
// members of the team (guests included; owners and admins may create one
// without being in the team); otherwise members of the organization other
// than guests. Non-members of the organization learn nothing.
func mayEnter(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	org, team := r.Params["org_id"], r.Params["team_id"]
	if id := r.Params["channel_id"]; id != "" && r.Params["creating"] == "" {
		ch := &channelv1.Channel{}
		found, err := f.Get(ctx, m.ChannelKey(id), ch)
		if err != nil {
			return err
		}
		if !found {
			return authz.Hide("channel", "no such channel")
		}
		team = ch.GetTeamId()
	}
	role, err := m.Role(ctx, f, org, p.ID)
	if err != nil {
		return err
	}
	if role == orgv1.Role_ROLE_UNSPECIFIED {
		return authz.Hide("org-member", "not a member of org "+org)
	}
	if team != "" {
		in, err := m.InTeam(ctx, f, org, team, p.ID)
		if err != nil {
			return err
		}
		if in || (r.Params["creating"] != "" && m.IsManager(role)) {
			return nil
		}
		return authz.Deny("team-member", "only members of the channel's team")
	}
	if role == orgv1.Role_ROLE_GUEST {
		return authz.Deny("no-guests", "guests only enter channels of their teams")
	}
	return nil
}

// anyone admits every authenticated caller; leaving a channel one is not
// in is answered not_found by the handler.
func anyone(context.Context, *authz.Principal, authz.Resource, authz.Facts) error { return nil }

// archiver allows the channel's creator and the organization's owners and
// admins, all only while members of the organization: standing in the
// organization is checked first, so a creator who was removed from it
// archives nothing (and learns nothing).
func archiver(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	ch := &channelv1.Channel{}
	found, err := f.Get(ctx, m.ChannelKey(r.Params["channel_id"]), ch)
	if err != nil {
		return err
	}
	if !found {
		return authz.Hide("channel", "no such channel")
	}
	role, err := m.Role(ctx, f, ch.GetOrgId(), p.ID)
	if err != nil {
		return err
	}
	if role == orgv1.Role_ROLE_UNSPECIFIED {
		return authz.Hide("org-member", "not a member of the channel's organization")
	}
	if ch.GetCreatedBy() != p.ID && !m.IsManager(role) {
		return authz.Deny("channel-archiver", "only the creator and organization owners and admins archive")
	}
	return nil
}

// resolve builds the resource of a call on channel_id as the handlers do.
func resolve(_ *authz.Principal, q authz.Question) authz.Resource {
	id := q.Params["channel_id"]
	org, _ := m.OrgOfChannel(id)
	if q.Params["org_id"] != "" && id == "" {
		org = q.Params["org_id"] // CreateChannel names the organization
	}
	return authz.Resource{Key: m.ChannelKey(id), Scope: m.ChannelKey(id), Params: map[string]string{"org_id": org, "channel_id": id}}
}

// orgMember allows members of the organization, guests included.
func orgMember(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	org := r.Params["org_id"]
	role, err := m.Role(ctx, f, org, p.ID)
	if err != nil {
		return err
	}
	if role == orgv1.Role_ROLE_UNSPECIFIED {
		return authz.Hide("org-member", "not a member of org "+org)
	}
	return nil
}

// resolveCreate builds the resource of CreateChannel as the handler does.
func resolveCreate(_ *authz.Principal, q authz.Question) authz.Resource {
	return authz.Resource{Params: map[string]string{"org_id": q.Params["org_id"], "team_id": q.Params["team_id"], "creating": "yes"}}
}

// Policies returns the policy of every ChannelService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: channelv1connect.ChannelServiceListChannelsProcedure, Action: "channel.list",
			Description: "members of the organization", Check: orgMember, Resolve: resolve},
		{Procedure: channelv1connect.ChannelServiceCreateChannelProcedure, Action: "channel.create",
			Description: "members of the organization other than guests; a team channel: team members, or owners and admins", Check: mayEnter, Resolve: resolveCreate},
		{Procedure: channelv1connect.ChannelServiceJoinChannelProcedure, Action: "channel.join",
			Description: "a team channel: members of the team, guests included; others: organization members except guests", Check: mayEnter, Resolve: resolve},
		{Procedure: channelv1connect.ChannelServiceLeaveChannelProcedure, Action: "channel.leave",
			Description: "the caller, from a channel they are in", Check: anyone, Resolve: resolve},
		{Procedure: channelv1connect.ChannelServiceArchiveChannelProcedure, Action: "channel.archive",
			Description: "the channel's creator and the organization's owners and admins", Check: archiver, Resolve: resolve},
	}
}

type createCmd struct {
	OrgID  string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
	Name   string `field:"name" validate:"required,utf8,nocontrol,min=1,max=80"`
	TeamID string `field:"team_id" validate:"omitempty,maxbytes=64,alphanum"`
}

// CreateChannel creates a channel with its creator as member, a system
// message and notifications for who may join it, in one transaction.
func (s *Service) CreateChannel(ctx context.Context, req *connect.Request[channelv1.CreateChannelRequest]) (*connect.Response[channelv1.CreateChannelResponse], error) {
	cmd := createCmd{OrgID: req.Msg.GetOrgId(), Name: req.Msg.GetName(), TeamID: req.Msg.GetTeamId()}
	id := m.ChannelID(cmd.OrgID, engine.NewID())
	changes, err := s.steps().Write(ctx, channelv1connect.ChannelServiceCreateChannelProcedure, cmd,
		authz.Question{Params: map[string]string{"org_id": cmd.OrgID, "team_id": cmd.TeamID}},
		func(ctx context.Context, c kit.Call) error {
			tx, p := c.Tx, c.Principal
			ch := &channelv1.Channel{Id: id, OrgId: cmd.OrgID, Name: cmd.Name, CreatedBy: p.ID, TeamId: cmd.TeamID}
			if cmd.TeamID != "" {
				if _, err := tx.Get(ctx, m.TeamKey(cmd.OrgID, cmd.TeamID), nil); err != nil {
					return err
				}
			}
			scope := m.ChannelKey(ch.Id)
			if _, err := tx.Put(ctx, scope, scope, ch); err != nil {
				return err
			}
			if _, err := tx.Put(ctx, m.ChanMemberKey(ch.Id, p.ID), scope, &channelv1.ChannelMember{ChannelId: ch.Id, UserId: p.ID}); err != nil {
				return err
			}
			id := engine.NewID()
			if _, err := tx.Put(ctx, m.MessageKey(ch.Id, id), scope, &messagev1.Message{
				Id: id, ChannelId: ch.Id, Author: p.ID, System: true, Text: p.ID + " created #" + cmd.Name,
			}); err != nil {
				return err
			}
			// Notify who may join it: the team's members, or the organization's
			// members other than guests. Jobs commit with the channel.
			prefix := "orgmember/" + cmd.OrgID + "/"
			if cmd.TeamID != "" {
				prefix = "teammember/" + cmd.OrgID + "/" + cmd.TeamID + "/"
			}
			keys, err := tx.KeysMatching(ctx, prefix, "")
			if err != nil {
				return err
			}
			for _, k := range keys {
				user := strings.TrimPrefix(k, prefix)
				if user == p.ID {
					continue
				}
				if cmd.TeamID == "" {
					mem := &orgv1.Member{}
					if _, err := tx.Get(ctx, k, mem); err != nil {
						return err
					}
					if mem.GetRole() == orgv1.Role_ROLE_GUEST {
						continue
					}
				}
				if err := tx.Enqueue(ctx, notify.KindChannelCreated, notify.ChannelCreated{
					UserID: user, ChannelID: ch.Id, ChannelName: cmd.Name, Author: p.ID,
				}); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	created := &channelv1.Channel{} // from the change: a replay returns the original
	if err := changes[0].DecodeInto(created); err != nil {
		return nil, err
	}
	return connect.NewResponse(&channelv1.CreateChannelResponse{Channel: created, Written: changes[0].RecordVersion()}), nil
}

type channelCmd struct {
	ChannelID string `field:"channel_id" validate:"required,maxbytes=130,printascii,excludesall=/ "`
}

// decode validates a channel id and returns its organization.
func (s *Service) decode(ctx context.Context, id string) (string, error) {
	if err := s.valid.Validate(ctx, channelCmd{ChannelID: id}); err != nil {
		return "", err
	}
	org, ok := m.OrgOfChannel(id)
	if !ok {
		return "", edge.Invalid("channel_id", "is not a channel id")
	}
	return org, nil
}

// change authorizes procedure on channel id over locked facts and runs fn
// (kit.Steps: the resource comes from the policy's resolver).
func (s *Service) change(ctx context.Context, procedure, id, _ string, fn func(ctx context.Context, tx *engine.Tx, p *authz.Principal) (engine.Change, error)) (engine.Change, error) {
	changes, err := s.steps().Write(ctx, procedure, nil, authz.Question{Params: map[string]string{"channel_id": id}},
		func(ctx context.Context, c kit.Call) error {
			_, err := fn(ctx, c.Tx, c.Principal)
			return err
		})
	if err != nil {
		return engine.Change{}, err
	}
	return changes[len(changes)-1], nil
}

// JoinChannel adds the caller to a channel.
func (s *Service) JoinChannel(ctx context.Context, req *connect.Request[channelv1.JoinChannelRequest]) (*connect.Response[channelv1.JoinChannelResponse], error) {
	id := req.Msg.GetChannelId()
	org, err := s.decode(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := s.change(ctx, channelv1connect.ChannelServiceJoinChannelProcedure, id, org, func(ctx context.Context, tx *engine.Tx, p *authz.Principal) (engine.Change, error) {
		ch := &channelv1.Channel{}
		if _, err := tx.Get(ctx, m.ChannelKey(id), ch); err != nil {
			return engine.Change{}, err
		}
		if ch.GetArchived() {
			return engine.Change{}, edge.Precondition("the channel is archived")
		}
		key := m.ChanMemberKey(id, p.ID)
		if _, err := tx.Get(ctx, key, nil); err == nil {
			return engine.Change{}, edge.Precondition("already a member")
		} else if !errors.Is(err, engine.ErrNotFound) {
			return engine.Change{}, err
		}
		return tx.Put(ctx, key, m.ChannelKey(id), &channelv1.ChannelMember{ChannelId: id, UserId: p.ID})
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&channelv1.JoinChannelResponse{Written: c.RecordVersion()}), nil
}

// LeaveChannel removes the caller from a channel.
func (s *Service) LeaveChannel(ctx context.Context, req *connect.Request[channelv1.LeaveChannelRequest]) (*connect.Response[channelv1.LeaveChannelResponse], error) {
	id := req.Msg.GetChannelId()
	org, err := s.decode(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := s.change(ctx, channelv1connect.ChannelServiceLeaveChannelProcedure, id, org, func(ctx context.Context, tx *engine.Tx, p *authz.Principal) (engine.Change, error) {
		return tx.Delete(ctx, m.ChanMemberKey(id, p.ID))
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&channelv1.LeaveChannelResponse{Written: c.RecordVersion()}), nil
}

// ArchiveChannel archives a channel.
func (s *Service) ArchiveChannel(ctx context.Context, req *connect.Request[channelv1.ArchiveChannelRequest]) (*connect.Response[channelv1.ArchiveChannelResponse], error) {
	id := req.Msg.GetChannelId()
	org, err := s.decode(ctx, id)
	if err != nil {
		return nil, err
	}
	c, err := s.change(ctx, channelv1connect.ChannelServiceArchiveChannelProcedure, id, org, func(ctx context.Context, tx *engine.Tx, _ *authz.Principal) (engine.Change, error) {
		ch := &channelv1.Channel{}
		if _, err := tx.Get(ctx, m.ChannelKey(id), ch); err != nil {
			return engine.Change{}, err
		}
		ch.Archived = true
		return tx.Put(ctx, m.ChannelKey(id), m.ChannelKey(id), ch)
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&channelv1.ArchiveChannelResponse{Written: c.RecordVersion()}), nil
}

type listCmd struct {
	OrgID    string `field:"org_id" validate:"required,maxbytes=64,alphanum"`
	PageSize int32  `field:"page_size" validate:"gte=0,lte=500"`
}

// ListChannels lists an organization's channels and those the caller is in.
func (s *Service) ListChannels(ctx context.Context, req *connect.Request[channelv1.ListChannelsRequest]) (*connect.Response[channelv1.ListChannelsResponse], error) {
	cmd := listCmd{OrgID: req.Msg.GetOrgId(), PageSize: req.Msg.GetPageSize()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	after, err := edge.ParsePageToken("page_token", req.Msg.GetPageToken())
	if err != nil {
		return nil, err
	}
	res := authz.Resource{Params: map[string]string{"org_id": cmd.OrgID}}
	if err := s.policies.AuthorizeWith(ctx, channelv1connect.ChannelServiceListChannelsProcedure, res, s.loader.Facts()); err != nil {
		return nil, err
	}
	p := authz.PrincipalFrom(ctx)
	chans, more, err := s.store.Matching(ctx, "channel/"+cmd.OrgID+".", "", after, edge.PageSize(cmd.PageSize))
	if err != nil {
		return nil, err
	}
	out := &channelv1.ListChannelsResponse{}
	var memberKeys []string
	for i := range chans {
		ch := &channelv1.Channel{}
		if err := chans[i].DecodeInto(ch); err != nil {
			return nil, err
		}
		out.Channels = append(out.Channels, ch)
		memberKeys = append(memberKeys, m.ChanMemberKey(ch.GetId(), p.ID))
	}
	if more {
		out.NextPageToken = edge.PageToken(chans[len(chans)-1].Key)
	}
	// The caller's memberships among this page's channels.
	joined, err := s.store.Records(ctx, memberKeys)
	if err != nil {
		return nil, err
	}
	for i := range joined {
		cm := &channelv1.ChannelMember{}
		if joined[i].Deleted {
			continue
		}
		if err := joined[i].DecodeInto(cm); err != nil {
			return nil, err
		}
		if cm.GetUserId() == p.ID {
			out.JoinedChannelIds = append(out.JoinedChannelIds, cm.GetChannelId())
		}
	}
	return connect.NewResponse(out), nil
}
