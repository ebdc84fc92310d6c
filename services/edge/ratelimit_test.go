package edge

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/sluicehq/sluice/authz"
)

// testClock is a clock a test moves by hand.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

func classifyTest(procedure string) RateClass {
	switch procedure {
	case "/create":
		return RateCreate
	case "/write":
		return RateWrites
	case "/typing":
		return RateTyping
	}
	return RateNone
}

func newTestLimiter(cfg RateLimits) (*RateLimiter, *testClock) {
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	l := NewRateLimiter(cfg, classifyTest)
	l.now = clock.now
	return l, clock
}

func as(id string, service bool) context.Context {
	return authz.WithPrincipal(context.Background(), &authz.Principal{ID: id, Service: service})
}

func TestRateLimiterPerPrincipalAndClass(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(RateLimits{Rates: [rateClasses]Rate{RateCreate: {Events: 3, Per: time.Minute}}})
	alice := as("alice", false)
	for i := range 3 {
		if err := l.Allow(alice, "/create"); err != nil {
			t.Fatalf("create %d: %v", i+1, err)
		}
	}
	err := l.Allow(alice, "/create")
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted {
		t.Fatalf("4th create = %v, want resource_exhausted", err)
	}
	// 3 a minute: the next one in 20 s, said three ways.
	if got := ce.Meta().Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After = %q, want 20", got)
	}
	var retry *errdetails.RetryInfo
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				retry = ri
			}
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() != 20*time.Second {
		t.Errorf("RetryInfo = %v, want 20s", retry)
	}
	if want := "too many create requests: at most 3 per 1m (burst 3); retry in 20s"; ce.Message() != want {
		t.Errorf("message %q, want %q", ce.Message(), want)
	}
	// Other classes, reads, other users and services are not affected.
	for name, ctx := range map[string]context.Context{"alice writing": alice, "bob": as("bob", false), "a service": as("billing", true)} {
		proc := "/create"
		if name == "alice writing" {
			proc = "/write"
		}
		if err := l.Allow(ctx, proc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for range 100 {
		if err := l.Allow(alice, "/read"); err != nil {
			t.Fatalf("read limited: %v", err)
		}
		if err := l.Allow(as("billing", true), "/create"); err != nil {
			t.Fatalf("service limited: %v", err)
		}
	}
	if err := l.Allow(context.Background(), "/create"); err != nil {
		t.Fatalf("anonymous call (Login) limited: %v", err)
	}
	clock.t = clock.t.Add(20 * time.Second)
	if err := l.Allow(alice, "/create"); err != nil {
		t.Fatalf("after 20s: %v", err)
	}

	// Services are limited when configured so; a class can be off.
	l2, _ := newTestLimiter(RateLimits{Services: true, Rates: [rateClasses]Rate{RateCreate: {Events: 1, Per: time.Hour}, RateTyping: Unlimited}})
	svc := as("billing", true)
	if l2.Allow(svc, "/create") != nil || l2.Allow(svc, "/create") == nil {
		t.Error("service not limited with Services set")
	}
	for range 1000 {
		if err := l2.Allow(alice, "/typing"); err != nil {
			t.Fatalf("typing off but limited: %v", err)
		}
	}
}

// The writes class (SetColor, SetAvatarUrl) lets one principal write
// 1000 times a second, sustained: the benchmarks drive it closed-loop.
func TestRateLimiterDefaultsAllowBenchmarkWriters(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(RateLimits{})
	for w := range 32 {
		ctx := as(fmt.Sprintf("writer-%d", w), false)
		for i := range 3000 { // 3 s at 1000/s
			clock.t = clock.t.Add(time.Millisecond)
			if err := l.Allow(ctx, "/write"); err != nil {
				t.Fatalf("writer %d, write %d at 1000/s: %v", w, i+1, err)
			}
		}
	}
	if r := l.Rate(RateWrites); float64(r.Events)/r.Per.Seconds() < 1000 {
		t.Fatalf("default writes rate %v is under 1000/s", r)
	}
}

// Buckets that have refilled are dropped; a flood of principals cannot grow
// the set past MaxKeys.
func TestRateLimiterEvictsIdleBuckets(t *testing.T) {
	t.Parallel()
	l, clock := newTestLimiter(RateLimits{MaxKeys: 100, Rates: [rateClasses]Rate{RateCreate: {Events: 10, Per: time.Minute}}})
	for i := range 1000 {
		_ = l.Allow(as(fmt.Sprintf("user-%d", i), false), "/create")
		if n := l.Len(); n > 100 {
			t.Fatalf("%d buckets after %d principals; bound is 100", n, i+1)
		}
	}
	// A minute later every bucket has refilled: the next new one sweeps.
	clock.t = clock.t.Add(61 * time.Second)
	_ = l.Allow(as("late", false), "/create")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after all went idle, want 1", n)
	}
	// A bucket still partly used survives a sweep; "late", refilled, goes.
	clock.t = clock.t.Add(50 * time.Second)
	for range 10 {
		_ = l.Allow(as("busy", false), "/create")
	}
	clock.t = clock.t.Add(11 * time.Second)
	_ = l.Allow(as("newcomer", false), "/create") // sweeps
	if n := l.Len(); n != 2 {
		t.Fatalf("%d buckets, want busy and newcomer", n)
	}
}
