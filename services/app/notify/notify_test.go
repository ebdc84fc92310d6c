package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	notifyv1 "github.com/sluicehq/sluice/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/sync/engine"
)

// wait bounds every wait in these tests.
const wait = 10 * time.Second

const domain = "example.test"

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	t.Cleanup(cancel)
	return ctx
}

// testStore returns a Store on a fresh, migrated database of its own.
func testStore(t *testing.T) (*engine.Store, *pgxpool.Pool) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.Postgres(t))
	if err != nil {
		t.Fatalf("parse database url: %v", err)
	}
	cfg.MaxConns = 4 // the test server is shared with other packages
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return engine.NewStore(pool, engine.StoreConfig{}), pool
}

// startWorker runs the notify handlers against the sink until the test ends.
func startWorker(t *testing.T, store *engine.Store, smtpAddr string) *engine.Worker {
	t.Helper()
	h := Handlers(store, MailConfig{Addr: smtpAddr, From: "Sluice <sluice@" + domain + ">", Domain: domain, Timeout: 5 * time.Second}, testLogger(t))
	w := engine.NewWorker(store.Pool(), h, engine.WorkerConfig{
		Poll: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testLogger(t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// post writes a message and enqueues its mention in one transaction, as
// the message service does.
func post(t *testing.T, store *engine.Store, m Mention) {
	t.Helper()
	ch, id, _ := strings.Cut(strings.TrimPrefix(m.MessageKey, "message/"), "/")
	_, err := store.Update(ctxT(t), m.Author, func(ctx context.Context, tx *engine.Tx) error {
		msg := &messagev1.Message{Id: id, ChannelId: ch, Author: m.Author, Text: m.Text}
		if _, err := tx.Put(ctx, m.MessageKey, "channel/"+ch, msg); err != nil {
			return err
		}
		return tx.Enqueue(ctx, KindMention, m)
	})
	if err != nil {
		t.Fatalf("post: %v", err)
	}
}

func mentionOf(user string) Mention {
	return Mention{UserID: user, ChannelID: "acme.general", MessageKey: "message/acme.general/m1", Author: "alice", Text: "hi @" + user}
}

// notification returns the notification record of user for message m1.
func notification(t *testing.T, store *engine.Store, user string) (engine.Change, bool) {
	t.Helper()
	recs, err := store.Records(ctxT(t), []string{"notification/" + user + "/m1"})
	if err != nil {
		t.Fatalf("read notification: %v", err)
	}
	if len(recs) == 0 {
		return engine.Change{}, false
	}
	return recs[0], true
}

// changeCount returns how many changes scope has had.
func changeCount(t *testing.T, pool *pgxpool.Pool, scope string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM changes WHERE scope = $1`, scope).Scan(&n); err != nil {
		t.Fatalf("count changes: %v", err)
	}
	return n
}

// jobsDone waits until no job is left to run and returns the dead jobs'
// errors.
func jobsDone(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	eventually(t, "every job to finish", func() bool {
		var left int
		if err := pool.QueryRow(ctxT(t), `SELECT count(*) FROM jobs WHERE done_at IS NULL`).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	var dead []string
	if err := pool.QueryRow(ctxT(t), `SELECT coalesce(array_agg(last_error), '{}') FROM jobs WHERE last_error IS NOT NULL`).Scan(&dead); err != nil {
		t.Fatal(err)
	}
	return dead
}

func TestMentionWritesNotificationAndMailsOnce(t *testing.T) {
	t.Parallel()
	store, pool := testStore(t)
	smtp := startSink(t)
	startWorker(t, store, smtp.Addr())

	post(t, store, mentionOf("bob"))
	eventually(t, "the mention e-mail", func() bool { mails, _ := smtp.Mails(); return len(mails) > 0 })
	if dead := jobsDone(t, pool); len(dead) > 0 {
		t.Fatalf("dead jobs: %v", dead)
	}

	// The e-mail goes out after the record commits: it is there by now.
	c, ok := notification(t, store, "bob")
	if !ok {
		t.Fatal("no notification record")
	}
	var got notifyv1.Notification
	if err := c.DecodeInto(&got); err != nil {
		t.Fatalf("decode notification: %v", err)
	}
	if c.Scope != "notifications/bob" || c.Version != 1 || c.Actor != "system" || got.GetKind() != notifyv1.Notification_KIND_MENTION ||
		got.GetChannelId() != "acme.general" || got.GetMessageKey() != "message/acme.general/m1" ||
		got.GetAuthor() != "alice" || got.GetText() != "hi @bob" {
		t.Fatalf("notification %s in %s v%d by %s = %v", c.Key, c.Scope, c.Version, c.Actor, &got)
	}

	time.Sleep(50 * time.Millisecond) // five polls: nothing more may be sent
	mails, _ := smtp.Mails()
	if len(mails) != 1 {
		t.Fatalf("%d e-mails, want 1", len(mails))
	}
	m := mails[0]
	if len(m.To) != 1 || m.To[0] != "bob@"+domain || m.From != "sluice@"+domain {
		t.Fatalf("envelope from %q to %q, want sluice@%s to bob@%s", m.From, m.To, domain, domain)
	}
	p := parseMail(t, m)
	if subj := p.Header.Get("Subject"); !strings.Contains(subj, "alice") || !strings.Contains(subj, "acme.general") {
		t.Fatalf("subject %q names neither the author nor the channel", subj)
	}
	if p.Header.Get("To") != "bob@"+domain || !strings.Contains(p.Body, "hi @bob") {
		t.Fatalf("To %q, body %q", p.Header.Get("To"), p.Body)
	}
}

func TestMentionMailRetriedWithoutDuplicateRecord(t *testing.T) {
	t.Parallel()
	store, pool := testStore(t)
	smtp := startSink(t)
	smtp.FailData(2)
	startWorker(t, store, smtp.Addr())

	post(t, store, mentionOf("bob"))
	if dead := jobsDone(t, pool); len(dead) > 0 {
		t.Fatalf("dead jobs: %v", dead)
	}
	mails, refused := smtp.Mails()
	if refused != 2 || len(mails) != 1 || mails[0].To[0] != "bob@"+domain {
		t.Fatalf("%d refused and %d delivered e-mails, want 2 refused then 1 to bob", refused, len(mails))
	}
	var attempts int
	if err := pool.QueryRow(ctxT(t), `SELECT attempts FROM jobs`).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	c, ok := notification(t, store, "bob")
	if attempts != 3 || !ok || c.Version != 1 || changeCount(t, pool, "notifications/bob") != 1 {
		t.Fatalf("after %d attempts: notification found=%v version %d, %d changes; want one version-1 record after 3 attempts",
			attempts, ok, c.Version, changeCount(t, pool, "notifications/bob"))
	}
}

func TestMentionRedeliveryWritesNoSecondRecord(t *testing.T) {
	t.Parallel()
	store, pool := testStore(t)
	smtp := startSink(t)
	h := Handlers(store, MailConfig{Addr: smtp.Addr(), Domain: domain}, testLogger(t))
	w := engine.NewWorker(pool, h, engine.WorkerConfig{})

	m := mentionOf("bob")
	post(t, store, m)
	// The same payload delivered again, after the first run wrote the record.
	if _, err := store.Update(ctxT(t), "alice", func(ctx context.Context, tx *engine.Tx) error {
		return tx.Enqueue(ctx, KindMention, m)
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n, err := w.RunOnce(ctxT(t), 1); n != 1 || err != nil {
			t.Fatalf("RunOnce = %d, %v; want 1 job", n, err)
		}
	}
	if dead := jobsDone(t, pool); len(dead) > 0 {
		t.Fatalf("dead jobs: %v", dead)
	}
	c, ok := notification(t, store, "bob")
	if !ok || c.Version != 1 || changeCount(t, pool, "notifications/bob") != 1 {
		t.Fatalf("notification found=%v version %d with %d changes; want one record at version 1",
			ok, c.Version, changeCount(t, pool, "notifications/bob"))
	}
	// Documented: the e-mail is at least once, with a stable Message-ID.
	mails, _ := smtp.Mails()
	if len(mails) != 2 {
		t.Fatalf("%d e-mails, want the redelivered job to send again", len(mails))
	}
	id1, id2 := parseMail(t, mails[0]).Header.Get("Message-ID"), parseMail(t, mails[1]).Header.Get("Message-ID")
	if id1 == "" || id1 != id2 {
		t.Fatalf("Message-IDs %q and %q, want one stable id", id1, id2)
	}
}

func TestMentionHeaderInjection(t *testing.T) {
	t.Parallel()
	store, pool := testStore(t)
	smtp := startSink(t)
	startWorker(t, store, smtp.Addr())

	// Author and channel go into the subject: their line breaks must not
	// start a header.
	m := Mention{UserID: "bob", ChannelID: "acme.general\r\nCc: carol@evil.test", MessageKey: "message/acme.general/m1",
		Author: "mallory\r\nBcc: mallory@evil.test", Text: "first\n.\nlast"}
	// A user id that is no local part: the record is written, no e-mail.
	evil := mentionOf("eve\r\nBcc: mallory@evil.test")
	post(t, store, m)
	if _, err := store.Update(ctxT(t), "alice", func(ctx context.Context, tx *engine.Tx) error {
		return tx.Enqueue(ctx, KindMention, evil)
	}); err != nil {
		t.Fatal(err)
	}
	if dead := jobsDone(t, pool); len(dead) > 0 {
		t.Fatalf("dead jobs: %v", dead)
	}
	if _, ok := notification(t, store, evil.UserID); !ok {
		t.Fatal("no notification record for the user without an e-mail address")
	}
	mails, _ := smtp.Mails()
	if len(mails) != 1 || len(mails[0].To) != 1 || mails[0].To[0] != "bob@"+domain {
		t.Fatalf("e-mails %+v, want exactly one, to bob", mails)
	}
	p := parseMail(t, mails[0])
	for _, k := range []string{"Bcc", "Cc"} {
		if v := p.Header.Get(k); v != "" {
			t.Fatalf("injected header %s: %s", k, v)
		}
	}
	if subj := p.Header.Get("Subject"); !strings.Contains(subj, "mallory Bcc: mallory@evil.test") {
		t.Fatalf("subject %q, want the author flattened onto one line", subj)
	}
	if !strings.Contains(p.Body, "first\n.\nlast") {
		t.Fatalf("body %q lost the line holding a single dot", p.Body)
	}
}

func TestMentionPermanentFailures(t *testing.T) {
	t.Parallel()
	smtp := startSink(t)
	h := Handlers(nil, MailConfig{Addr: smtp.Addr(), Domain: domain}, nil)[KindMention]
	for _, payload := range []string{`{not json`, `{"user_id":"","message_key":"message/c/m1"}`, `{"user_id":"bob","message_key":"message/c/"}`} {
		if err := h(ctxT(t), engine.Job{Kind: KindMention, Payload: []byte(payload), Attempt: 1}); !errors.Is(err, engine.ErrJobPermanent) {
			t.Errorf("payload %s: %v, want a permanent failure", payload, err)
		}
	}

	mailer := newMailer(MailConfig{Addr: smtp.Addr(), Domain: domain}, slog.New(slog.DiscardHandler))
	if err := mailer.sendMention(ctxT(t), mentionOf("nobody")); !errors.Is(err, engine.ErrJobPermanent) {
		t.Errorf("recipient refused with 550: %v, want a permanent failure", err)
	}
	smtp.FailData(1)
	if err := mailer.sendMention(ctxT(t), mentionOf("bob")); err == nil || errors.Is(err, engine.ErrJobPermanent) {
		t.Errorf("DATA refused with 451: %v, want an error to retry", err)
	}
	if err := mailer.sendMention(ctxT(t), mentionOf("bob")); err != nil {
		t.Errorf("retry: %v", err)
	}
	if mails, refused := smtp.Mails(); len(mails) != 1 || refused != 1 {
		t.Errorf("%d delivered, %d refused; want 1 and 1", len(mails), refused)
	}
}

func TestMailConfigDisables(t *testing.T) {
	t.Parallel()
	for _, cfg := range []MailConfig{
		{},
		{Addr: "127.0.0.1:25"},
		{Addr: "127.0.0.1:25", Domain: "example.test\r\nBcc: x@evil.test"},
		{Addr: "127.0.0.1:25", Domain: "example.test", From: "a@b\r\nBcc: x@evil.test"},
		{Addr: "127.0.0.1:25", Domain: "example.test", From: "not an address"},
	} {
		if newMailer(cfg, slog.New(slog.DiscardHandler)).enabled {
			t.Errorf("%+v enables e-mail", cfg)
		}
	}
	if m := newMailer(MailConfig{Addr: "127.0.0.1:25", Domain: "example.test"}, slog.New(slog.DiscardHandler)); !m.enabled || m.from != "noreply@example.test" {
		t.Errorf("default sender %q (enabled %v), want noreply@example.test", m.from, m.enabled)
	}
}

func TestValidLocalPart(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"bob": true, "bob.smith": true, "b+tag": true, "user_42": true, "o'neil": true,
		"": false, ".bob": false, "bob.": false, "b..b": false, "bob smith": false,
		"bob\r\nBcc: x": false, "bob@evil": false, "<bob>": false, "bøb": false, `"bob"`: false,
		strings.Repeat("a", 65): false,
	} {
		if got := validLocalPart(in); got != want {
			t.Errorf("validLocalPart(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"alice":                   "alice",
		"a\r\nBcc: x":             "a Bcc: x",
		"  tabs\tand\u0085next  ": "tabs and next",
		strings.Repeat("é", 101):  strings.Repeat("é", 100) + "…",
	} {
		if got := oneLine(in, 100); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

// startWorkerWith is startWorker with a mail configuration of the test's.
func startWorkerWith(t *testing.T, store *engine.Store, mail MailConfig) {
	t.Helper()
	mail.From, mail.Domain, mail.Timeout = "Sluice <sluice@"+domain+">", domain, 5*time.Second
	w := engine.NewWorker(store.Pool(), Handlers(store, mail, testLogger(t)), engine.WorkerConfig{
		Poll: 10 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: testLogger(t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// A provider-like server that requires STARTTLS and AUTH gets the mail,
// over TLS, authenticated; with a wrong password or a server that does not
// offer STARTTLS, no mail is sent (and no password travels in clear).
func TestMentionMailSTARTTLSAndAuth(t *testing.T) {
	t.Parallel()
	cert, roots := testenv.SelfSignedCert(t)
	secure := &testenv.SMTPSecure{Cert: cert, Username: "sluice", Password: "s3cret"}
	tlsCfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}

	t.Run("delivered", func(t *testing.T) {
		t.Parallel()
		store, pool := testStore(t)
		sink := testenv.StartSecureSMTP(t, secure)
		startWorkerWith(t, store, MailConfig{Addr: sink.Addr(), Username: "sluice", Password: "s3cret", TLS: tlsCfg})
		post(t, store, mentionOf("bob"))
		eventually(t, "the mention e-mail", func() bool { mails, _ := sink.Mails(); return len(mails) == 1 })
		if dead := jobsDone(t, pool); len(dead) > 0 {
			t.Fatalf("dead jobs: %v", dead)
		}
	})
	for _, tt := range []struct {
		name string
		sec  *testenv.SMTPSecure
		cfg  MailConfig
		want string
	}{
		{"wrong password", secure, MailConfig{Username: "sluice", Password: "nope", TLS: tlsCfg}, "smtp auth"},
		{"no STARTTLS offered", nil, MailConfig{Username: "sluice", Password: "s3cret", TLS: tlsCfg}, "does not offer STARTTLS"},
		{"untrusted certificate", secure, MailConfig{Username: "sluice", Password: "s3cret"}, "starttls"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			store, pool := testStore(t)
			sink := testenv.StartSecureSMTP(t, tt.sec)
			tt.cfg.Addr = sink.Addr()
			startWorkerWith(t, store, tt.cfg)
			post(t, store, mentionOf("bob"))
			eventually(t, "the mail job to fail", func() bool {
				var errText *string
				_ = pool.QueryRow(ctxT(t), `SELECT last_error FROM jobs WHERE kind = $1`, KindMention).Scan(&errText)
				return errText != nil && strings.Contains(*errText, tt.want)
			})
			if mails, _ := sink.Mails(); len(mails) != 0 {
				t.Fatalf("%d mails accepted, want none", len(mails))
			}
		})
	}
}

func TestMailConfigRefusesPasswordInClear(t *testing.T) {
	t.Parallel()
	m := newMailer(MailConfig{Addr: "127.0.0.1:25", Domain: "example.test", Security: "none", Username: "u", Password: "p"}, slog.New(slog.DiscardHandler))
	if m.enabled {
		t.Fatal("a password over a session without TLS was accepted")
	}
	if m := newMailer(MailConfig{Addr: "127.0.0.1:25", Domain: "example.test", Security: "ssl"}, slog.New(slog.DiscardHandler)); m.enabled {
		t.Fatal("an unknown security mode was accepted")
	}
}
