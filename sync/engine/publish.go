package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// PublisherConfig configures a Publisher. The zero value is valid.
type PublisherConfig struct {
	// Prefix is the NATS subject prefix; empty means DefaultPrefix.
	Prefix string
	// AckBatch bounds how many changes are marked published per round
	// trip. Zero means 256.
	AckBatch int
	// AckDelay is how long the Publisher gathers acknowledged changes
	// before it marks them published in one statement (sooner when
	// AckBatch are waiting). The mark only keeps the Relay from sending a
	// change again, so it need not be prompt; gathering saves Postgres a
	// transaction per write. Zero means 20ms.
	AckDelay time.Duration
	// AckQueue bounds the changes waiting to be marked published. When it
	// is full a change simply stays unpublished and the Relay sends it
	// again later; nothing is lost. Zero means 65536.
	AckQueue int
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
	// TracerProvider, when set, traces each publication and carries the
	// write's trace context to every instance in the message headers.
	TracerProvider trace.TracerProvider
}

type changeID struct {
	scope string
	seq   int64
}

// Publisher sends committed changes to NATS and, once the server has
// acknowledged them (a flush round trip), marks them published so the Relay
// leaves them alone. It is the Store's Notifier in production. It is safe
// for concurrent use; Run marks what it published.
type Publisher struct {
	nc     *nats.Conn
	pool   *pgxpool.Pool
	subj   subjects
	log    *slog.Logger
	cfg    PublisherConfig
	tracer trace.Tracer

	acks chan changeID

	counters publisherCounters
}

// NewPublisher returns a Publisher; Run runs its marking of published
// changes. nc and pool stay owned by the caller and must outlive it.
func NewPublisher(nc *nats.Conn, pool *pgxpool.Pool, cfg PublisherConfig) *Publisher {
	if cfg.AckBatch <= 0 {
		cfg.AckBatch = 256
	}
	if cfg.AckDelay <= 0 {
		cfg.AckDelay = 20 * time.Millisecond
	}
	if cfg.AckQueue <= 0 {
		cfg.AckQueue = 65536
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		nc:     nc,
		pool:   pool,
		subj:   newSubjects(cfg.Prefix),
		log:    cfg.Logger,
		cfg:    cfg,
		acks:   make(chan changeID, cfg.AckQueue),
		tracer: tracerOf(cfg.TracerProvider),
	}
	return p
}

// Notify publishes changes to NATS without blocking on the network: nats.go
// buffers the messages, also while it reconnects. Changes that cannot be
// encoded or published stay unpublished for the Relay. When ctx carries a
// trace, the messages carry its context (W3C trace context headers).
func (p *Publisher) Notify(ctx context.Context, changes []Change) {
	var header nats.Header
	if trace.SpanContextFromContext(ctx).IsValid() {
		var span trace.Span
		ctx, span = p.tracer.Start(ctx, "sluice.publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.Int("sluice.changes", len(changes))))
		defer span.End()
		header = nats.Header{}
		propagator.Inject(ctx, natsCarrier(header))
	}
	for i := range changes {
		c := &changes[i]
		data, err := encodeChange(c)
		if err != nil {
			p.log.Error("encode change", "key", c.Key, "scope", c.Scope, "version", c.Version, "err", err)
			p.counters.failed.Add(1)
			continue
		}
		if err := p.nc.PublishMsg(&nats.Msg{Subject: p.subj.change(c.Scope), Data: data, Header: header}); err != nil {
			p.log.Warn("publish change; relay will retry", "scope", c.Scope, "seq", c.Seq, "err", err)
			p.counters.failed.Add(1)
			continue
		}
		p.counters.published.Add(1)
		select {
		case p.acks <- changeID{scope: c.Scope, seq: c.Seq}:
		default: // the relay will republish; a duplicate is dropped by version
		}
	}
}

// Run marks published changes until ctx ends; changes still queued then
// stay unpublished and are sent again by a Relay. Notify may be called
// before and after Run. It returns nil.
func (p *Publisher) Run(ctx context.Context) error {
	batch := make([]changeID, 0, p.cfg.AckBatch)
	gather := time.NewTimer(p.cfg.AckDelay)
	gather.Stop()
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return nil
		case id := <-p.acks:
			batch = append(batch, id)
		}
		gather.Reset(p.cfg.AckDelay)
	fill:
		for len(batch) < p.cfg.AckBatch {
			select {
			case id := <-p.acks:
				batch = append(batch, id)
			case <-gather.C:
				break fill
			case <-ctx.Done():
				return nil
			}
		}
		gather.Stop()
		// The flush round trip proves the server received every message
		// published before it.
		if err := p.nc.FlushTimeout(2 * time.Second); err != nil {
			p.log.Warn("nats flush; relay will republish", "count", len(batch), "err", err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := markPublished(ctx, p.pool, batch)
		cancel()
		if err != nil {
			p.counters.markFailures.Add(1)
			p.log.Warn("mark published; relay will republish", "count", len(batch), "err", err)
		} else {
			p.counters.marked.Add(uint64(len(batch)))
		}
	}
}

func markPublished(ctx context.Context, pool *pgxpool.Pool, ids []changeID) error {
	scopes := make([]string, len(ids))
	seqs := make([]int64, len(ids))
	for i, id := range ids {
		scopes[i], seqs[i] = id.scope, id.seq
	}
	// The mark need not survive a crash: a lost mark only makes the relay
	// publish the change again, and streams drop the duplicate. So it does
	// not wait for the WAL flush, and does not compete with the writes'
	// commits for it. The whole transaction goes in one round trip.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`
		UPDATE changes c SET published = true
		FROM unnest($1::text[], $2::bigint[]) AS u(scope, seq)
		WHERE c.scope = u.scope AND c.seq = u.seq AND NOT c.published`, scopes, seqs)
	b.Queue(`COMMIT`)
	// A failed statement aborts the transaction, and the pool drops a
	// connection that is released inside one.
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("mark published: %w", translate(err))
	}
	return nil
}

// encodeChange is the NATS payload of a change: the binary stream event,
// decoded once per instance and shared by every stream.
func encodeChange(c *Change) ([]byte, error) {
	ev, err := c.Event(false, false)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(ev)
}
