package auth

import (
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Rate is a token bucket: Attempts per Per on average, at most Burst at
// once.
type Rate struct {
	Attempts int
	Per      time.Duration
	Burst    int
}

// ThrottleConfig bounds login attempts per username and address, per
// client address, and per username over every address that has not
// logged in as it. The zero value of each field is its documented default.
type ThrottleConfig struct {
	// Disabled turns throttling off.
	Disabled bool
	// PerUserAddress limits attempts for one username (case-insensitive)
	// from one client address. Default 5 per minute, burst 5.
	PerUserAddress Rate
	// PerUser limits attempts for one username from all the addresses
	// that have not logged in as it within KnownFor: the bound on guessing
	// spread over many addresses. Attempts from an address that has are
	// not counted, so no one can lock a user out of the addresses they
	// use. Default 60 per hour, burst 20.
	PerUser Rate
	// PerAddress limits attempts from one client address (IPv6 by /64),
	// whatever the username. Default 20 per minute, burst 20.
	PerAddress Rate
	// KnownFor is how long an address that logged in as a user is
	// exempt from PerUser for that user. Default 30 days; negative: no
	// address is ever exempt.
	KnownFor time.Duration
	// MaxKeys bounds the usernames, the addresses, the username and
	// address pairs and the known addresses tracked (each). Default
	// 100000.
	MaxKeys int
}

// Default login throttling.
var (
	DefaultPerUserAddress = Rate{Attempts: 5, Per: time.Minute, Burst: 5}
	DefaultPerUser        = Rate{Attempts: 60, Per: time.Hour, Burst: 20}
	DefaultPerAddress     = Rate{Attempts: 20, Per: time.Minute, Burst: 20}
	DefaultKnownFor       = 30 * 24 * time.Hour
)

func (r Rate) orDefault(def Rate) Rate {
	if r.Attempts <= 0 || r.Per <= 0 {
		return def
	}
	if r.Burst <= 0 {
		r.Burst = r.Attempts
	}
	return r
}

// throttle charges every login attempt before the password is checked,
// and refunds the charge when the login succeeds: a throttled caller gets
// the same answer whether or not its password is right, and legitimate
// logins never use the allowance up. An attempt is charged to its
// username and address together, to its address, and, unless the address
// has logged in as that username before, to the username: one address
// guessing one password is stopped by the first, spraying usernames by the
// second, guessing from many addresses by the third, and a stranger who
// spends a username's allowance locks out only the addresses the user has
// never logged in from. It is safe for concurrent use.
type throttle struct {
	now   func() time.Time
	pair  *buckets // username and address
	user  *buckets // username, from addresses not known for it
	addr  *buckets
	known *knownAddrs
	mu    sync.Mutex
	noop  bool
}

func newThrottle(cfg ThrottleConfig) *throttle {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.KnownFor == 0 {
		cfg.KnownFor = DefaultKnownFor
	}
	return &throttle{
		now:   time.Now,
		noop:  cfg.Disabled,
		pair:  newBuckets(cfg.PerUserAddress.orDefault(DefaultPerUserAddress), cfg.MaxKeys),
		user:  newBuckets(cfg.PerUser.orDefault(DefaultPerUser), cfg.MaxKeys),
		addr:  newBuckets(cfg.PerAddress.orDefault(DefaultPerAddress), cfg.MaxKeys),
		known: &knownAddrs{ttl: cfg.KnownFor, max: cfg.MaxKeys, m: make(map[string]time.Time)},
	}
}

// charge is what take charged, for refund and succeeded.
type charge struct {
	user, addr, pair string
	account          bool // charged to the username's own allowance
}

// take charges one attempt for username from addr. It returns false, and
// charges nothing, if an allowance is used up.
func (t *throttle) take(username, addr string) (charge, bool) {
	if t == nil || t.noop {
		return charge{}, true
	}
	now := t.now()
	c := charge{user: userKey(username), addr: addrKey(addr)}
	c.pair = c.user + "\x00" + c.addr
	t.mu.Lock()
	defer t.mu.Unlock()
	c.account = !t.known.has(c.pair, now)
	pb, ab := t.pair.get(c.pair, now), t.addr.get(c.addr, now)
	var ub *bucket
	if c.account {
		ub = t.user.get(c.user, now)
	}
	if pb.tokens < 1 || ab.tokens < 1 || (ub != nil && ub.tokens < 1) {
		return charge{}, false
	}
	pb.tokens--
	ab.tokens--
	if ub != nil {
		ub.tokens--
	}
	return c, true
}

// refund gives back the attempt take charged.
func (t *throttle) refund(c charge) {
	if t == nil || t.noop {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refundLocked(c, now)
}

func (t *throttle) refundLocked(c charge, now time.Time) {
	t.pair.give(c.pair, now)
	t.addr.give(c.addr, now)
	if c.account {
		t.user.give(c.user, now)
	}
}

// succeeded refunds a successful login and remembers its address as known
// for its username.
func (t *throttle) succeeded(c charge) {
	if t == nil || t.noop {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refundLocked(c, now)
	t.known.add(c.pair, now)
}

// knownAddrs remembers, per username and address, the last successful
// login, for ttl. It holds at most max entries: expired ones are dropped
// when it is full and at least hourly, then arbitrary ones.
type knownAddrs struct {
	ttl       time.Duration
	max       int
	m         map[string]time.Time
	lastSweep time.Time
}

func (k *knownAddrs) has(key string, now time.Time) bool {
	at, ok := k.m[key]
	return ok && now.Sub(at) < k.ttl
}

func (k *knownAddrs) add(key string, now time.Time) {
	if k.ttl < 0 {
		return
	}
	if _, ok := k.m[key]; !ok && (len(k.m) >= k.max || now.Sub(k.lastSweep) > time.Hour) {
		k.lastSweep = now
		for key, at := range k.m {
			if now.Sub(at) >= k.ttl {
				delete(k.m, key)
			}
		}
		for key := range k.m {
			if len(k.m) < k.max*9/10 {
				break
			}
			delete(k.m, key)
		}
	}
	k.m[key] = now
}

func userKey(username string) string { return strings.ToLower(username) }

// addrKey groups IPv6 addresses by /64, the block one subscriber usually
// holds.
func addrKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// buckets is a bounded set of token buckets by key. A bucket that has
// refilled is the same as no bucket, so it is dropped when the set is
// swept; the set sweeps when it reaches its bound and at least every
// refill period.
type buckets struct {
	rate      Rate
	max       int
	m         map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newBuckets(r Rate, max int) *buckets {
	return &buckets{rate: r, max: max, m: make(map[string]*bucket)}
}

// refill tops b up to now.
func (bs *buckets) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens += d.Seconds() * float64(bs.rate.Attempts) / bs.rate.Per.Seconds()
		b.tokens = min(b.tokens, float64(bs.rate.Burst))
		b.at = now
	}
}

// get returns the refilled bucket of key, creating it full.
func (bs *buckets) get(key string, now time.Time) *bucket {
	if b, ok := bs.m[key]; ok {
		bs.refill(b, now)
		return b
	}
	if len(bs.m) >= bs.max || now.Sub(bs.lastSweep) > bs.rate.Per {
		bs.sweep(now)
	}
	b := &bucket{tokens: float64(bs.rate.Burst), at: now}
	bs.m[key] = b
	return b
}

// give returns a token to key's bucket, if it still has one.
func (bs *buckets) give(key string, now time.Time) {
	if b, ok := bs.m[key]; ok {
		bs.refill(b, now)
		b.tokens = min(b.tokens+1, float64(bs.rate.Burst))
	}
}

// sweep drops refilled buckets and, if the set is still full, arbitrary
// ones (Go's map order is random) down to 90% of the bound: memory stays
// bounded even under a flood of distinct keys, at the price of forgetting
// some partly used allowances.
func (bs *buckets) sweep(now time.Time) {
	bs.lastSweep = now
	for k, b := range bs.m {
		bs.refill(b, now)
		if b.tokens >= float64(bs.rate.Burst) {
			delete(bs.m, k)
		}
	}
	for k := range bs.m {
		if len(bs.m) < bs.max*9/10 {
			break
		}
		delete(bs.m, k)
	}
}
