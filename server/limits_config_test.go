package server

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/edge"
)

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]edge.Rate{
		"300/1m,50": {Events: 300, Per: time.Minute, Burst: 50},
		"20/m":      {Events: 20, Per: time.Minute},
		"1000/1s":   {Events: 1000, Per: time.Second},
		"5/h,1":     {Events: 5, Per: time.Hour, Burst: 1},
		"off":       edge.Unlimited,
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "20", "0/1m", "-1/1m", "20/", "20/0s", "20/1m,0", "20/1m,x", "x/1m", "on"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
	if s := edge.DefaultRates[edge.RateMessages].String(); s != "300/1m,50" {
		t.Errorf("default messages rate prints as %q", s)
	}
}

// The documented example's limits section loads as it says; flags win
// over it.
func TestLimitsConfig(t *testing.T) {
	t.Parallel()
	fc, err := LoadConfigFile("../docs/sluice.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := connLimits(Config{}, fc)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")} // + auth.throttle.trusted_proxies
	if lim.PerAddress != 256 || !slices.Equal(lim.Trusted, want) {
		t.Errorf("conn limits = %+v", lim)
	}
	if got := rateLimits(Config{}, fc); got.Rates != edge.DefaultRates || got.Disabled || got.Services {
		t.Errorf("example rates = %+v, want the defaults", got)
	}

	// Flags win; "none" trusts no one but the trusted proxies.
	cfg := Config{MaxConnsPerAddr: -1, TrustedPeers: "none"}
	cfg.RateLimits.Rates[edge.RateTyping] = edge.Unlimited
	lim, err = connLimits(cfg, fc)
	if err != nil || lim.PerAddress != -1 || !slices.Equal(lim.Trusted, want[2:]) {
		t.Errorf("conn limits with flags = %+v, %v", lim, err)
	}
	if r := rateLimits(cfg, fc).Rates; r[edge.RateTyping] != edge.Unlimited || r[edge.RateCreate] != edge.DefaultRates[edge.RateCreate] {
		t.Errorf("rates with a flag = %+v", r)
	}
	if _, err := connLimits(Config{TrustedPeers: "10.0.0.0/8,proxy"}, &FileConfig{}); err == nil {
		t.Error("a bad -trusted-peers accepted")
	}
	// No file, no flags: default cap, loopback trusted (nil).
	if lim, _ := connLimits(Config{}, &FileConfig{}); lim.PerAddress != 0 || lim.Trusted != nil {
		t.Errorf("defaults = %+v", lim)
	}
	fc2, err := ParseConfig([]byte("limits: {trusted_peers: [], rates: {create: {attempts: -1}, services: true}}"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if lim, _ := connLimits(Config{}, fc2); lim.Trusted == nil || len(lim.Trusted) != 0 {
		t.Errorf("trusted_peers: [] = %v, want no one", lim.Trusted)
	}
	if r := rateLimits(Config{}, fc2); r.Rates[edge.RateCreate] != edge.Unlimited || !r.Services {
		t.Errorf("file rates = %+v", r)
	}
}

func TestLimitsConfigErrors(t *testing.T) {
	t.Parallel()
	for yaml, field := range map[string]string{
		"limits: {connections_per_address: -2}":                          "limits.connections_per_address",
		"limits: {trusted_peers: [proxy.local]}":                         "limits.trusted_peers[0]",
		"limits: {rates: {typing: {attempts: 5}}}":                       "limits.rates.typing.per",
		"limits: {rates: {writes: {per: 1s}}}":                           "limits.rates.writes.attempts",
		"limits: {rates: {messages: {attempts: 5, per: 1s, burst: -1}}}": "limits.rates.messages.burst",
		"limits: {rates: {create: {attempts: -3}}}":                      "limits.rates.create.attempts",
	} {
		_, err := ParseConfig([]byte(yaml), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: error %v, want one naming %s", yaml, err, field)
		}
	}
}
