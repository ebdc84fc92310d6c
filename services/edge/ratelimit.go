package edge

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/authz"
)

// RateClass is a class of procedures that share one rate limit per
// principal: a user who creates channels in a loop is stopped without
// slowing their messages, and typing signals cannot crowd out writes.
type RateClass int

// The rate classes. RateNone is never limited: read-only procedures and
// streams (which are bounded by the stream limits instead).
const (
	RateNone RateClass = iota
	// RateCreate: creating organizations, teams and channels, and
	// inviting (procedures named Create… or Invite…).
	RateCreate
	// RateTyping: typing signals.
	RateTyping
	// RateMessages: posting, editing and deleting messages.
	RateMessages
	// RateWrites: every other procedure with side effects.
	RateWrites
	rateClasses
)

var rateClassNames = [rateClasses]string{"", "create", "typing", "messages", "writes"}

// String returns the class's name as in the configuration ("messages").
func (c RateClass) String() string {
	if c < 0 || c >= rateClasses {
		return "unknown"
	}
	return rateClassNames[c]
}

// Rate is a token bucket: Events per Per on average, at most Burst at
// once. The zero Rate means the class's default; Events < 0 means no
// limit.
type Rate struct {
	Events int
	Per    time.Duration
	Burst  int
}

// Unlimited is a Rate that never refuses.
var Unlimited = Rate{Events: -1}

// String formats r as the flags read it: "20/1m,20", or "off".
func (r Rate) String() string {
	switch {
	case r.Events < 0:
		return "off"
	case r.Events == 0:
		return "default"
	}
	return fmt.Sprintf("%d/%s,%d", r.Events, r.per(), r.burst())
}

// per formats Per without zero units: 1m, not 1m0s.
func (r Rate) per() string {
	s := r.Per.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return max(1, r.Events)
}

// DefaultRates are the limits per principal of each class (index
// RateClass). RateWrites is high on purpose: SetColor and SetAvatarUrl
// are driven closed-loop by the benchmarks at up to about 1000 calls a
// second from one principal, which the default must allow; a deployment
// serving only people can set it far lower.
var DefaultRates = [rateClasses]Rate{
	RateCreate:   {Events: 20, Per: time.Minute, Burst: 20},
	RateTyping:   {Events: 30, Per: time.Minute, Burst: 10},
	RateMessages: {Events: 300, Per: time.Minute, Burst: 50},
	RateWrites:   {Events: 2000, Per: time.Second, Burst: 2000},
}

// RateLimits configures the rate limits per principal. The zero value
// is the documented default.
type RateLimits struct {
	// Disabled turns every rate limit off.
	Disabled bool
	// Rates per class (index RateClass); a zero Rate takes DefaultRates.
	Rates [rateClasses]Rate
	// Services limits service principals too. Default: they are exempt
	// (an operator's import or a backend acting for many users).
	Services bool
	// MaxKeys bounds the buckets tracked (principal × class). Default
	// 100000.
	MaxKeys int
}

// RateLimiter refuses calls of a principal past its class's rate, with
// resource_exhausted and a retry hint. It keeps a token bucket per
// principal and class; a bucket that has refilled is dropped, so memory
// follows the principals active within about a refill period, and is
// bounded by MaxKeys in any case. It is safe for concurrent use.
type RateLimiter struct {
	classify func(procedure string) RateClass
	off      bool
	services bool
	rates    [rateClasses]Rate
	max      int
	now      func() time.Time

	mu        sync.Mutex
	buckets   map[rateKey]*rate.Limiter
	lastSweep time.Time
}

type rateKey struct {
	principal string
	class     RateClass
}

// NewRateLimiter returns a RateLimiter; classify names the class of a
// procedure (RateNone: not limited).
func NewRateLimiter(cfg RateLimits, classify func(procedure string) RateClass) *RateLimiter {
	l := &RateLimiter{classify: classify, off: cfg.Disabled, services: cfg.Services,
		max: cfg.MaxKeys, now: time.Now, buckets: make(map[rateKey]*rate.Limiter)}
	if l.max <= 0 {
		l.max = 100_000
	}
	for c := range rateClasses {
		l.rates[c] = cfg.Rates[c]
		if l.rates[c].Events == 0 || (l.rates[c].Events > 0 && l.rates[c].Per <= 0) {
			l.rates[c] = DefaultRates[c]
		}
	}
	return l
}

// Rate returns the rate in force for class c.
func (l *RateLimiter) Rate(c RateClass) Rate { return l.rates[c] }

// Allow charges one call of procedure to the principal in ctx. It returns
// nil, or a resource_exhausted error that says when to retry (a
// google.rpc.RetryInfo detail and a Retry-After header, in seconds).
func (l *RateLimiter) Allow(ctx context.Context, procedure string) error {
	if l == nil || l.off {
		return nil
	}
	p := authz.PrincipalFrom(ctx)
	if p == nil || (p.Service && !l.services) {
		return nil
	}
	c := l.classify(procedure)
	if c <= RateNone || c >= rateClasses {
		return nil
	}
	r := l.rates[c]
	if r.Events < 0 {
		return nil
	}
	now := l.now()
	wait, ok := l.take(rateKey{principal: p.ID, class: c}, r, now)
	if ok {
		return nil
	}
	return retryLater(fmt.Sprintf("too many %s requests: at most %d per %s (burst %d); retry in %s",
		c, r.Events, r.per(), r.burst(), wait.Round(time.Millisecond)), wait)
}

// take takes a token from key's bucket, or says how long until one is
// there.
func (l *RateLimiter) take(key rateKey, r Rate, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max || now.Sub(l.lastSweep) > time.Minute {
			l.sweep(now)
		}
		b = rate.NewLimiter(rate.Limit(float64(r.Events)/r.Per.Seconds()), r.burst()) // full
		l.buckets[key] = b
	}
	if b.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - b.TokensAt(now)
	return time.Duration(missing / float64(b.Limit()) * float64(time.Second)), false
}

// sweep drops the buckets that have refilled (the same as no bucket) and,
// if the set is still full, arbitrary ones (Go's map order is random) down
// to 90% of the bound: forgetting some partly used allowances rather than
// growing.
func (l *RateLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(b.Burst()) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*9/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// Len returns the number of buckets tracked.
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// retryLater returns a resource_exhausted error with msg that tells the
// client to retry after wait: a google.rpc.RetryInfo detail, and a
// Retry-After header in whole seconds (rounded up) for plain HTTP clients.
func retryLater(msg string, wait time.Duration) error {
	ce := clientError(connect.CodeResourceExhausted, msg)
	if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		ce.AddDetail(d)
	}
	ce.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(wait, time.Second).Seconds()))))
	return ce
}

// Interceptor returns the interceptor that applies l to every call. It
// must run after authentication (it reads the principal).
func (l *RateLimiter) Interceptor() connect.Interceptor { return rateInterceptor{l} }

type rateInterceptor struct{ l *RateLimiter }

func (i rateInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.l.Allow(ctx, req.Spec().Procedure); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i rateInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rateInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := i.l.Allow(ctx, conn.Spec().Procedure); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
