package auth

import (
	"net/netip"
	"strings"
	gosync "sync"
	"time"
)

// Rate is a token bucket: Attempts per Per on average, at most Burst at
// once.
type Rate struct {
	Attempts int
	Per      time.Duration
	Burst    int
}

// ThrottleConfig bounds login attempts per username and per client
// address. The zero value of each field is its documented default.
type ThrottleConfig struct {
	// Disabled turns throttling off.
	Disabled bool
	// PerUser limits attempts for one username (case-insensitive).
	// Default 5 per minute, burst 5.
	PerUser Rate
	// PerAddress limits attempts from one client address (IPv6 by /64).
	// Default 20 per minute, burst 20.
	PerAddress Rate
	// MaxKeys bounds the usernames and the addresses tracked (each).
	// Default 100000.
	MaxKeys int
}

// Default login throttling.
var (
	DefaultPerUser    = Rate{Attempts: 5, Per: time.Minute, Burst: 5}
	DefaultPerAddress = Rate{Attempts: 20, Per: time.Minute, Burst: 20}
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

// throttle charges every login attempt to its username and its address
// before the password is checked, and refunds the charge when the login
// succeeds: a throttled caller gets the same answer whether or not its
// password is right, and legitimate logins never use the allowance up. It
// is safe for concurrent use.
type throttle struct {
	now  func() time.Time
	user *buckets
	addr *buckets
	mu   gosync.Mutex
	noop bool
}

func newThrottle(cfg ThrottleConfig) *throttle {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	return &throttle{
		now:  time.Now,
		noop: cfg.Disabled,
		user: newBuckets(cfg.PerUser.orDefault(DefaultPerUser), cfg.MaxKeys),
		addr: newBuckets(cfg.PerAddress.orDefault(DefaultPerAddress), cfg.MaxKeys),
	}
}

// take charges one attempt for username from addr. It returns false, and
// charges nothing, if either allowance is used up.
func (t *throttle) take(username, addr string) bool {
	if t == nil || t.noop {
		return true
	}
	now := t.now()
	uk, ak := userKey(username), addrKey(addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	ub, ab := t.user.get(uk, now), t.addr.get(ak, now)
	if ub.tokens < 1 || ab.tokens < 1 {
		return false
	}
	ub.tokens--
	ab.tokens--
	return true
}

// refund gives back the attempt take charged.
func (t *throttle) refund(username, addr string) {
	if t == nil || t.noop {
		return
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.user.give(userKey(username), now)
	t.addr.give(addrKey(addr), now)
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
