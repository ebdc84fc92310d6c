// Package message is the MessageService: messages in channel scopes.
package message

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	"github.com/sluicehq/sluice/services/access"
	m "github.com/sluicehq/sluice/services/app/membership"
	"github.com/sluicehq/sluice/services/app/notify"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/services/syncsvc"
	"github.com/sluicehq/sluice/sync/engine"
)

// Signals publishes ephemeral events (engine.Hub in production).
type Signals interface {
	PublishEphemeral(scope, kind, from string) error
}

// Service implements sluice.message.v1.MessageService.
type Service struct {
	store    *engine.Store
	policies *authz.Table
	loader   *access.Loader
	signals  Signals
	valid    *edge.Validator
	lister   *syncsvc.Lister
}

var _ messagev1connect.MessageServiceHandler = (*Service)(nil)

// steps are the shared steps of the service's mutating handlers.
func (s *Service) steps() kit.Steps {
	return kit.Steps{Store: s.store, Policies: s.policies, Valid: s.valid}
}

// NewService returns the MessageService. ListMessages reads through
// lister, the paging of SyncService.List.
func NewService(store *engine.Store, policies *authz.Table, loader *access.Loader, signals Signals, valid *edge.Validator, lister *syncsvc.Lister) *Service {
	return &Service{store: store, policies: policies, loader: loader, signals: signals, valid: valid, lister: lister}
}

// member allows members of the channel; others learn nothing.
func member(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	ch := r.Params["channel_id"]
	in, err := m.InChannel(ctx, f, ch, p.ID)
	if err != nil {
		return err
	}
	if !in {
		return authz.Hide("channel-member", "not a member of channel "+ch)
	}
	return nil
}

// author allows channel members on their own messages; with
// r.Params["managers"] == "yes", also the organization's owners and admins.
func author(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	if err := member(ctx, p, r, f); err != nil {
		return err
	}
	msg := &messagev1.Message{}
	found, err := f.Get(ctx, r.Key, msg)
	if err != nil {
		return err
	}
	if !found {
		return authz.Hide("message", "no such message")
	}
	if msg.GetAuthor() == p.ID && !msg.GetSystem() {
		return nil
	}
	if r.Params["managers"] == "yes" {
		org, _ := m.OrgOfChannel(r.Params["channel_id"])
		role, err := m.Role(ctx, f, org, p.ID)
		if err != nil {
			return err
		}
		if m.IsManager(role) {
			return nil
		}
	}
	return authz.Deny("message-author", "only the author may change this message")
}

func withManagers(ctx context.Context, p *authz.Principal, r authz.Resource, f authz.Facts) error {
	r.Params = map[string]string{"channel_id": r.Params["channel_id"], "managers": "yes"}
	return author(ctx, p, r, f)
}

func resolveChannel(_ *authz.Principal, q authz.Question) authz.Resource {
	ch := q.Params["channel_id"]
	return authz.Resource{Scope: m.ChannelKey(ch), Params: map[string]string{"channel_id": ch}}
}

func resolveKey(_ *authz.Principal, q authz.Question) authz.Resource {
	ch, _ := m.ChannelOfMessage(q.Key)
	return authz.Resource{Key: q.Key, Scope: m.ChannelKey(ch), Params: map[string]string{"channel_id": ch}}
}

// inChannel resolves the resource of a channel-wide call through the
// procedure's own policy resolver, so that what AccessService answers for
// the call and what the handler enforces cannot drift apart.
func (s *Service) inChannel(p *authz.Principal, procedure, channelID string) authz.Resource {
	res, _ := s.policies.ResourceFor(p, authz.Question{Procedure: procedure, Params: map[string]string{"channel_id": channelID}})
	return res
}

// Policies returns the policy of every MessageService procedure.
func Policies() []authz.Policy {
	return []authz.Policy{
		{Procedure: messagev1connect.MessageServicePostMessageProcedure, Action: "message.post",
			Description: "members of the channel", Check: member, Resolve: resolveChannel},
		{Procedure: messagev1connect.MessageServiceEditMessageProcedure, Action: "message.edit",
			Description: "the message's author, while a member of the channel", Check: author, Resolve: resolveKey},
		{Procedure: messagev1connect.MessageServiceDeleteMessageProcedure, Action: "message.delete",
			Description: "the message's author, or owners and admins of the organization, while members of the channel", Check: withManagers, Resolve: resolveKey},
		{Procedure: messagev1connect.MessageServiceSendTypingProcedure, Action: "message.typing",
			Description: "members of the channel (the same rule as posting)", Check: member, Resolve: resolveChannel},
		{Procedure: messagev1connect.MessageServiceListMessagesProcedure, Action: "message.list",
			Description: "members of the channel", Check: member, Resolve: resolveChannel},
	}
}

type postCmd struct {
	ChannelID string `field:"channel_id" validate:"required,maxbytes=130,printascii,excludesall=/ "`
	Text      string `field:"text" validate:"required,utf8,text,min=1,max=4000"`
}

// PostMessage posts a message to a channel; mentioned members are
// notified.
func (s *Service) PostMessage(ctx context.Context, req *connect.Request[messagev1.PostMessageRequest]) (*connect.Response[messagev1.PostMessageResponse], error) {
	cmd := postCmd{ChannelID: req.Msg.GetChannelId(), Text: req.Msg.GetText()}
	id := engine.NewID()
	key := m.MessageKey(cmd.ChannelID, id)
	changes, err := s.steps().Write(ctx, messagev1connect.MessageServicePostMessageProcedure, cmd,
		authz.Question{Params: map[string]string{"channel_id": cmd.ChannelID}},
		func(ctx context.Context, c kit.Call) error {
			tx, p := c.Tx, c.Principal
			if err := notArchived(ctx, tx, cmd.ChannelID); err != nil {
				return err
			}
			msg := &messagev1.Message{Id: id, ChannelId: cmd.ChannelID, Author: p.ID, Text: cmd.Text}
			if _, err := tx.Put(ctx, key, c.Resource.Scope, msg); err != nil {
				return err
			}
			// Mentioned members who can read the channel get a notification
			// (and an e-mail): jobs committed with the message, so neither is
			// lost nor sent for a message that was not written.
			for _, user := range Mentions(cmd.Text) {
				if user == p.ID {
					continue
				}
				if _, err := tx.Get(ctx, m.ChanMemberKey(cmd.ChannelID, user), nil); errors.Is(err, engine.ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if err := tx.Enqueue(ctx, notify.KindMention, notify.Mention{
					UserID: user, ChannelID: cmd.ChannelID, MessageKey: key, Author: p.ID, Text: cmd.Text,
				}); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	posted := &messagev1.Message{} // from the change: a replay returns the original
	if err := changes[0].DecodeInto(posted); err != nil {
		return nil, err
	}
	return connect.NewResponse(&messagev1.PostMessageResponse{Message: posted, Written: changes[0].RecordVersion()}), nil
}

// MaxMentions bounds the users one message notifies.
const MaxMentions = 20

var mentionRE = regexp.MustCompile(`(^|[^\w@])@([A-Za-z0-9][A-Za-z0-9_.-]{0,63})`)

// Mentions returns the distinct user ids mentioned as @id in text, in
// order, at most MaxMentions. A trailing '.' or '-' is punctuation.
func Mentions(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, sm := range mentionRE.FindAllStringSubmatch(text, -1) {
		id := strings.TrimRight(sm[2], ".-")
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
		if len(out) == MaxMentions {
			break
		}
	}
	return out
}

// errArchived refuses changes to an archived channel's messages.
var errArchived = edge.Precondition("the channel is archived")

// notArchived refuses a change in channel ch once it is archived. The
// channel record is read in tx, so an archive committed first is seen.
func notArchived(ctx context.Context, tx *engine.Tx, ch string) error {
	c := &channelv1.Channel{}
	if _, err := tx.Get(ctx, m.ChannelKey(ch), c); err != nil {
		return err
	}
	if c.GetArchived() {
		return errArchived
	}
	return nil
}

type keyCmd struct {
	Key string `field:"key" validate:"required,maxbytes=200,printascii,startswith=message/"`
}

// decodeKey validates a message key and returns its channel.
func (s *Service) decodeKey(ctx context.Context, key string) (string, error) {
	if err := s.valid.Validate(ctx, keyCmd{Key: key}); err != nil {
		return "", err
	}
	ch, ok := m.ChannelOfMessage(key)
	if !ok {
		return "", edge.Invalid("key", "is not a message key")
	}
	return ch, nil
}

type editCmd struct {
	Text string `field:"text" validate:"required,utf8,text,min=1,max=4000"`
}

// EditMessage changes the text of the caller's own message.
func (s *Service) EditMessage(ctx context.Context, req *connect.Request[messagev1.EditMessageRequest]) (*connect.Response[messagev1.EditMessageResponse], error) {
	ch, err := s.decodeKey(ctx, req.Msg.GetKey())
	if err != nil {
		return nil, err
	}
	key := req.Msg.GetKey()
	changes, err := s.steps().Write(ctx, messagev1connect.MessageServiceEditMessageProcedure, editCmd{Text: req.Msg.GetText()},
		authz.Question{Key: key},
		func(ctx context.Context, c kit.Call) error {
			if err := notArchived(ctx, c.Tx, ch); err != nil {
				return err
			}
			msg := &messagev1.Message{}
			if _, err := c.Tx.Get(ctx, key, msg); err != nil {
				return err
			}
			msg.Text, msg.Edited = req.Msg.GetText(), true
			_, err := c.Tx.Put(ctx, key, c.Resource.Scope, msg)
			return err
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&messagev1.EditMessageResponse{Written: changes[0].RecordVersion()}), nil
}

// DeleteMessage deletes a message; streams get a tombstone.
func (s *Service) DeleteMessage(ctx context.Context, req *connect.Request[messagev1.DeleteMessageRequest]) (*connect.Response[messagev1.DeleteMessageResponse], error) {
	ch, err := s.decodeKey(ctx, req.Msg.GetKey())
	if err != nil {
		return nil, err
	}
	key := req.Msg.GetKey()
	changes, err := s.steps().Write(ctx, messagev1connect.MessageServiceDeleteMessageProcedure, nil,
		authz.Question{Key: key},
		func(ctx context.Context, c kit.Call) error {
			if err := notArchived(ctx, c.Tx, ch); err != nil {
				return err
			}
			_, err := c.Tx.Delete(ctx, key)
			return err
		})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&messagev1.DeleteMessageResponse{Written: changes[0].RecordVersion()}), nil
}

// errAfterSeq refuses the oldest-first paging ListMessages had before it
// was built on SyncService.List, rather than answer it with another order.
var errAfterSeq = edge.Invalid("after_seq", "is no longer supported: pages go newest first, with before_seq")

type listCmd struct {
	ChannelID string `field:"channel_id" validate:"required,maxbytes=130,printascii,excludesall=/ "`
	syncsvc.Paging
}

// ListMessages pages through a channel's current messages, newest first:
// SyncService.List of the channel's scope keeping only its messages, read
// through the same Lister (paging, limits, read rule, cursors).
func (s *Service) ListMessages(ctx context.Context, req *connect.Request[messagev1.ListMessagesRequest]) (*connect.Response[messagev1.ListMessagesResponse], error) {
	cmd := listCmd{ChannelID: req.Msg.GetChannelId(), Paging: syncsvc.Paging{BeforeSeq: req.Msg.GetBeforeSeq(), Limit: req.Msg.GetLimit()}}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	if req.Msg.GetAfterSeq() != 0 {
		return nil, errAfterSeq
	}
	res := s.inChannel(authz.PrincipalFrom(ctx), messagev1connect.MessageServiceListMessagesProcedure, cmd.ChannelID)
	if err := s.policies.AuthorizeWith(ctx, messagev1connect.MessageServiceListMessagesProcedure, res, s.loader.Facts()); err != nil {
		return nil, err
	}
	page, err := s.lister.Page(ctx, m.ChannelKey(cmd.ChannelID), m.MessagePrefix(cmd.ChannelID), cmd.Paging)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&messagev1.ListMessagesResponse{
		Messages:      page.GetRecords(),
		NextBeforeSeq: page.GetNextBeforeSeq(),
		HasMore:       page.GetNextBeforeSeq() != 0,
		ScopeSeq:      page.GetScopeSeq(),
	}), nil
}

type typingCmd struct {
	ChannelID string `field:"channel_id" validate:"required,maxbytes=130,printascii,excludesall=/ "`
}

// SendTyping signals the channel's streams that the caller is typing.
// Nothing is stored; an archived channel refuses it like a post.
func (s *Service) SendTyping(ctx context.Context, req *connect.Request[messagev1.SendTypingRequest]) (*connect.Response[messagev1.SendTypingResponse], error) {
	cmd := typingCmd{ChannelID: req.Msg.GetChannelId()}
	if err := s.valid.Validate(ctx, cmd); err != nil {
		return nil, err
	}
	res := s.inChannel(authz.PrincipalFrom(ctx), messagev1connect.MessageServiceSendTypingProcedure, cmd.ChannelID)
	facts := s.loader.Facts()
	if err := s.policies.AuthorizeWith(ctx, messagev1connect.MessageServiceSendTypingProcedure, res, facts); err != nil {
		return nil, err
	}
	ch := &channelv1.Channel{}
	if _, err := facts.Get(ctx, m.ChannelKey(cmd.ChannelID), ch); err != nil {
		return nil, err
	}
	if ch.GetArchived() {
		return nil, errArchived
	}
	p := authz.PrincipalFrom(ctx)
	if err := s.signals.PublishEphemeral(m.ChannelKey(cmd.ChannelID), "typing", p.ID); err != nil {
		return nil, fmt.Errorf("publish typing: %w", err)
	}
	return connect.NewResponse(&messagev1.SendTypingResponse{}), nil
}
