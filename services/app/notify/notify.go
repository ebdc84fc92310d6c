// Package notify delivers the side effects of posting a message. For each
// mention it writes a notification record into the mentioned user's own
// scope and sends the user one e-mail. The work runs as sync jobs
// (KindMention) enqueued in the transaction that writes the message, so a
// notification exists only for a committed message and never delays or
// undoes the post.
//
// Delivery is at least once: a job runs again after a failure, a crash or
// an expired lease. Duplicates are avoided as follows. The notification's
// key is derived from the message (`notification/<user id>/<message id>`
// in scope `notifications/<user id>`) and a record that exists, even as a
// tombstone, is left alone, so a rerun writes nothing. The e-mail is sent
// only after the record is committed; a failed send fails the job, which
// retries the send without writing the record again. The one duplicate left
// is an e-mail whose acceptance by the SMTP server was not recorded before
// the job ended (SMTP has no idempotency key); both copies carry the same
// Message-ID, derived from the user and the message, so mail clients can
// fold them.
package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/authz"
	"log/slog"
	"strings"
	"unicode/utf8"

	notifyv1 "github.com/sluicehq/sluice/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/sync/engine"
)

// Job kinds.
const (
	// KindMention is the kind of the job that notifies a mentioned user;
	// its payload is a Mention.
	KindMention = "notify.mention"
	// KindChannelCreated tells a user a channel they may join was
	// created; its payload is a ChannelCreated. No e-mail.
	KindChannelCreated = "notify.channel_created"
)

// ChannelCreated is the payload of a KindChannelCreated job.
type ChannelCreated struct {
	UserID      string `json:"user_id"`
	ChannelID   string `json:"channel_id"`
	ChannelName string `json:"channel_name"`
	Author      string `json:"author"`
}

// Mention is the payload of a KindMention job: UserID was mentioned by
// Author in the message MessageKey of channel ChannelID.
type Mention struct {
	UserID     string `json:"user_id"`
	ChannelID  string `json:"channel_id"`
	MessageKey string `json:"message_key"`
	Author     string `json:"author"`
	Text       string `json:"text"`
}

// actor is the actor of the notification records.
const actor = "system"

// Handlers returns the job handlers of this package, keyed by kind, to be
// passed to engine.NewWorker. A mention writes the record
// `notification/<user id>/<message id>` (a google.protobuf.Struct with
// channel_id, message_key, author and text) in scope
// `notifications/<user id>` as actor "system", then mails <user id>@Domain
// unless mail is disabled or the user id is not a valid e-mail local part.
// A malformed payload fails the job permanently; a failed write or send
// retries it. log may be nil.
func Handlers(store *engine.Store, mail MailConfig, log *slog.Logger) map[string]engine.JobHandler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &mentions{store: store, mail: newMailer(mail, log), log: log}
	return map[string]engine.JobHandler{KindMention: h.handle, KindChannelCreated: h.channelCreated}
}

// channelCreated writes `notification/<user id>/<channel id>`.
func (h *mentions) channelCreated(ctx context.Context, job engine.Job) error {
	var c ChannelCreated
	if err := json.Unmarshal(job.Payload, &c); err != nil {
		return fmt.Errorf("decode channel notification: %w: %w", err, engine.ErrJobPermanent)
	}
	if c.UserID == "" || c.ChannelID == "" || !utf8.ValidString(c.UserID) || !utf8.ValidString(c.ChannelID) {
		return fmt.Errorf("channel notification without a user or channel: %w", engine.ErrJobPermanent)
	}
	return h.write(ctx, c.UserID, c.ChannelID, &notifyv1.Notification{
		Kind: notifyv1.Notification_KIND_CHANNEL_CREATED, ChannelId: c.ChannelID, ChannelName: c.ChannelName, Author: c.Author,
	})
}

type mentions struct {
	store *engine.Store
	mail  *mailer
	log   *slog.Logger
}

func (h *mentions) handle(ctx context.Context, job engine.Job) error {
	var m Mention
	if err := json.Unmarshal(job.Payload, &m); err != nil {
		return fmt.Errorf("decode mention: %w: %w", err, engine.ErrJobPermanent)
	}
	msgID := m.MessageKey[strings.LastIndex(m.MessageKey, "/")+1:]
	if m.UserID == "" || msgID == "" || !utf8.ValidString(m.UserID) || !utf8.ValidString(msgID) {
		return fmt.Errorf("mention without a user or message id: %w", engine.ErrJobPermanent)
	}
	if err := h.record(ctx, m, msgID); err != nil {
		return err
	}
	return h.mail.sendMention(ctx, m)
}

// record writes the notification of m unless it exists, live or deleted.
func (h *mentions) record(ctx context.Context, m Mention, msgID string) error {
	return h.write(ctx, m.UserID, msgID, &notifyv1.Notification{
		Kind:       notifyv1.Notification_KIND_MENTION,
		ChannelId:  m.ChannelID,
		MessageKey: m.MessageKey,
		Author:     m.Author,
		Text:       m.Text,
	})
}

// write writes `notification/<user>/<id>` with payload unless it exists,
// live or deleted, so reruns of a job write it once.
func (h *mentions) write(ctx context.Context, user, id string, payload *notifyv1.Notification) error {
	key := "notification/" + user + "/" + id
	scope := "notifications/" + user
	// A rerun finds the record here; a deleted notification stays deleted
	// (tombstones are returned too, where Tx.Get reports them missing).
	prior, err := h.store.Records(ctx, []string{key})
	if err != nil {
		return err
	}
	if len(prior) > 0 {
		return nil
	}
	_, err = h.store.Update(ctx, actor, func(ctx context.Context, tx *engine.Tx) error {
		// Runs of the same job racing each other: the record is locked and
		// the loser leaves it alone (Put's ErrRetry brings it back here).
		_, err := tx.Get(ctx, key, nil)
		if err == nil || !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		_, err = tx.Put(ctx, key, scope, payload)
		return err
	})
	if err != nil {
		return fmt.Errorf("write notification: %w", err)
	}
	return nil
}

// ReadRule is the read rule of `notifications/<user id>` scopes: only the
// user themselves.
func ReadRule() authz.ReadRule {
	return authz.ReadRule{Type: "notifications", Description: "the user themselves",
		Check: func(_ context.Context, p *authz.Principal, id string, _ authz.Facts) error {
			if p.ID == id {
				return nil
			}
			return authz.Hide("notifications-self", "only the user reads their notifications")
		}}
}
