package engine

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Presence kinds of EphemeralEvent.
const (
	PresenceHere  = "presence.here"
	PresenceJoin  = "presence.join"
	PresenceLeave = "presence.leave"
)

// PresenceConfig configures Presence. The zero value is valid.
type PresenceConfig struct {
	// TTL is how long an instance's presence rows live without a
	// heartbeat (a crashed instance's users go offline after it). Zero
	// means 30s.
	TTL time.Duration
	// Beat is the heartbeat interval. Zero means TTL/3.
	Beat   time.Duration
	Logger *slog.Logger
}

// Presence tracks who has a stream open on which scope, across instances:
// each instance keeps rows for its own streams in Postgres, refreshes them
// with a heartbeat, and signals join and leave on the scope's subject when
// a user's first stream opens or last one closes anywhere. Safe for
// concurrent use; Run keeps its rows alive.
type Presence struct {
	pool     *pgxpool.Pool
	hub      *Hub
	instance string
	cfg      PresenceConfig
	log      *slog.Logger

	mu    sync.Mutex
	local map[[2]string]int // (scope, user) -> open streams here
	// stripes serialize the Postgres side of a user's first stream and
	// last stream on a scope here: a leave's DELETE must not remove the row
	// of a stream that entered meanwhile.
	stripes [64]sync.Mutex

	// testHookLeave, when set, runs in a last leave before it touches
	// Postgres.
	testHookLeave func()

	outage Outage
}

// NewPresence returns Presence for this instance; Run keeps its rows
// alive.
func NewPresence(pool *pgxpool.Pool, hub *Hub, cfg PresenceConfig) *Presence {
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Beat <= 0 {
		cfg.Beat = cfg.TTL / 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Presence{pool: pool, hub: hub, instance: NewID(), cfg: cfg, log: cfg.Logger,
		local: make(map[[2]string]int)}
}

// Run refreshes this instance's rows until ctx ends, then removes them,
// signalling leave for users who are then offline everywhere. It returns
// nil.
func (p *Presence) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.leaveAll()
			return nil
		case <-t.C:
			bctx, cancel := context.WithTimeout(ctx, p.cfg.Beat)
			switch err := p.beat(bctx); {
			case err != nil && ctx.Err() == nil:
				p.outage.Fail(p.log, "presence heartbeat", err)
			case err == nil:
				p.outage.OK(p.log, "presence heartbeat")
			}
			cancel()
		}
	}
}

// leaveAll removes this instance's rows and signals the leaves.
func (p *Presence) leaveAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := p.pool.Query(ctx, `DELETE FROM presence WHERE instance = $1 RETURNING scope, user_id`, p.instance)
	if err != nil {
		p.log.Warn("presence close", "err", err)
		return
	}
	gone, err := pgx.CollectRows(rows, scanPair)
	if err != nil {
		p.log.Warn("presence close", "err", err)
		return
	}
	p.signalLeaves(ctx, gone)
}

// Enter records that user has a stream open on scope until leave is
// called. The first stream of a user on a scope, on any instance, signals
// join.
func (p *Presence) Enter(ctx context.Context, scope, user string) (leave func(), err error) {
	k := [2]string{scope, user}
	p.mu.Lock()
	p.local[k]++
	first := p.local[k] == 1
	p.mu.Unlock()
	if first {
		lock := p.stripe(k)
		lock.Lock()
		defer lock.Unlock()
		var was bool
		err := p.pool.QueryRow(ctx, `
			WITH prior AS (
				SELECT EXISTS (SELECT 1 FROM presence WHERE scope = $1 AND user_id = $2 AND expires_at > now()) AS online
			), up AS (
				INSERT INTO presence (scope, user_id, instance, expires_at) VALUES ($1, $2, $3, now() + $4::interval)
				ON CONFLICT (scope, user_id, instance) DO UPDATE SET expires_at = EXCLUDED.expires_at
			)
			SELECT online FROM prior`, scope, user, p.instance, p.cfg.TTL).Scan(&was)
		if err != nil {
			p.release(k)
			return nil, fmt.Errorf("presence enter: %w", translate(err))
		}
		if !was {
			if err := p.hub.PublishEphemeral(scope, PresenceJoin, user); err != nil {
				p.log.Warn("presence join signal", "scope", scope, "err", err)
			}
		}
	}
	var once sync.Once
	return func() { once.Do(func() { p.leave(k) }) }, nil
}

// stripe returns the lock of k's stripe.
func (p *Presence) stripe(k [2]string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(k[0]))
	h.Write([]byte{0})
	h.Write([]byte(k[1]))
	return &p.stripes[h.Sum32()%uint32(len(p.stripes))]
}

// release undoes a count without touching Postgres.
func (p *Presence) release(k [2]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.local[k]--; p.local[k] <= 0 {
		delete(p.local, k)
	}
}

func (p *Presence) leave(k [2]string) {
	p.mu.Lock()
	p.local[k]--
	last := p.local[k] <= 0
	if last {
		delete(p.local, k)
	}
	p.mu.Unlock()
	if !last {
		return
	}
	if p.testHookLeave != nil {
		p.testHookLeave()
	}
	lock := p.stripe(k)
	lock.Lock()
	defer lock.Unlock()
	p.mu.Lock()
	back := p.local[k] > 0 // a stream entered since: its row stays
	p.mu.Unlock()
	if back {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.pool.Exec(ctx, `DELETE FROM presence WHERE scope = $1 AND user_id = $2 AND instance = $3`, k[0], k[1], p.instance); err != nil {
		p.log.Warn("presence leave", "scope", k[0], "err", err)
		return // the row expires with the TTL; the sweep signals leave
	}
	p.signalLeaves(ctx, [][2]string{k})
}

// signalLeaves signals leave for each (scope, user) no instance still has.
func (p *Presence) signalLeaves(ctx context.Context, gone [][2]string) {
	for _, k := range gone {
		var online bool
		if err := p.pool.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM presence WHERE scope = $1 AND user_id = $2 AND expires_at > now())`, k[0], k[1]).Scan(&online); err != nil {
			p.log.Warn("presence leave check", "err", err)
			continue
		}
		if !online {
			if err := p.hub.PublishEphemeral(k[0], PresenceLeave, k[1]); err != nil {
				p.log.Warn("presence leave signal", "scope", k[0], "err", err)
			}
		}
	}
}

// Online returns the users with a stream open on scope, on any instance.
func (p *Presence) Online(ctx context.Context, scope string) ([]string, error) {
	rows, err := p.pool.Query(ctx, `
		SELECT DISTINCT user_id FROM presence WHERE scope = $1 AND expires_at > now() ORDER BY user_id`, scope)
	if err != nil {
		return nil, fmt.Errorf("presence: %w", translate(err))
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("presence: %w", translate(err))
	}
	return users, nil
}

// loop refreshes this instance's rows and sweeps rows other instances left
// to expire (a crash), signalling leave for them.
func (p *Presence) beat(ctx context.Context) error {
	p.mu.Lock()
	scopes := make([]string, 0, len(p.local))
	users := make([]string, 0, len(p.local))
	for k := range p.local {
		scopes, users = append(scopes, k[0]), append(users, k[1])
	}
	p.mu.Unlock()
	if len(scopes) > 0 {
		if _, err := p.pool.Exec(ctx, `
			INSERT INTO presence (scope, user_id, instance, expires_at)
			SELECT s, u, $3, now() + $4::interval FROM unnest($1::text[], $2::text[]) AS x(s, u)
			ON CONFLICT (scope, user_id, instance) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
			scopes, users, p.instance, p.cfg.TTL); err != nil {
			return fmt.Errorf("refresh: %w", translate(err))
		}
	}
	rows, err := p.pool.Query(ctx, `DELETE FROM presence WHERE expires_at < now() RETURNING scope, user_id`)
	if err != nil {
		return fmt.Errorf("sweep: %w", translate(err))
	}
	gone, err := pgx.CollectRows(rows, scanPair)
	if err != nil {
		return fmt.Errorf("sweep: %w", translate(err))
	}
	p.signalLeaves(ctx, gone)
	return nil
}

func scanPair(r pgx.CollectableRow) ([2]string, error) {
	var k [2]string
	err := r.Scan(&k[0], &k[1])
	return k, err
}
