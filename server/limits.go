package server

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/services/edge"
)

// LimitsFileConfig is the limits section: connections per client address
// and rate limits per principal. Flags, when given, win over it.
type LimitsFileConfig struct {
	// ConnectionsPerAddress bounds the open connections of one client
	// address (default 256; -1: no limit).
	ConnectionsPerAddress int `yaml:"connections_per_address" rule:"gte=-1"`
	// TrustedPeers are addresses or CIDR prefixes (reverse proxies) whose
	// connections are not counted. Unset: loopback. An empty list trusts
	// no one. auth.throttle.trusted_proxies are trusted too.
	TrustedPeers []string        `yaml:"trusted_peers" rule:"dive,ipprefix"`
	Rates        RatesFileConfig `yaml:"rates"`
}

// RatesFileConfig is limits.rates: a token bucket per principal and
// procedure class. A class left out keeps its default.
type RatesFileConfig struct {
	Disabled bool `yaml:"disabled"`
	// Services limits service principals too (default: exempt).
	Services bool           `yaml:"services"`
	Create   RateFileConfig `yaml:"create"`
	Typing   RateFileConfig `yaml:"typing"`
	Messages RateFileConfig `yaml:"messages"`
	Writes   RateFileConfig `yaml:"writes"`
}

// classes returns the file's rates by class.
func (r RatesFileConfig) classes() map[edge.RateClass]RateFileConfig {
	return map[edge.RateClass]RateFileConfig{
		edge.RateCreate: r.Create, edge.RateTyping: r.Typing, edge.RateMessages: r.Messages, edge.RateWrites: r.Writes,
	}
}

// validate returns the problems of the limits section, each naming its
// field.
func (l LimitsFileConfig) validate() []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	// connections_per_address, trusted_peers and each rate's own fields
	// are checked by their `rule` tags (FileConfig.tagErrors).
	for c, r := range l.Rates.classes() {
		at := "limits.rates." + c.String()
		switch {
		case r.Attempts > 0 && r.Per <= 0:
			bad(at+".per", "must be a positive duration when attempts is set")
		case r.Attempts == 0 && (r.Per != 0 || r.Burst != 0):
			bad(at+".attempts", "required when per or burst is set")
		}
	}
	return errs
}

// connLimits returns the connection limits of cfg over fc: the flags win;
// auth.throttle.trusted_proxies are trusted too.
func connLimits(cfg Config, fc *FileConfig) (edge.ConnLimits, error) {
	lim := edge.ConnLimits{PerAddress: fc.Limits.ConnectionsPerAddress}
	if cfg.MaxConnsPerAddr != 0 {
		lim.PerAddress = cfg.MaxConnsPerAddr
	}
	peers := fc.Limits.TrustedPeers
	if cfg.TrustedPeers != "" {
		peers = []string{}
		if cfg.TrustedPeers != "none" {
			peers = strings.Split(cfg.TrustedPeers, ",")
		}
	}
	if peers != nil {
		lim.Trusted = []netip.Prefix{}
		for _, s := range peers {
			p, err := parsePrefix(strings.TrimSpace(s))
			if err != nil {
				return lim, fmt.Errorf("trusted peers: %q is not an IP address or CIDR prefix", s)
			}
			lim.Trusted = append(lim.Trusted, p)
		}
	}
	if proxies := fc.Auth.Throttle.TrustedProxies; len(proxies) > 0 {
		if lim.Trusted == nil {
			lim.Trusted = append([]netip.Prefix{}, edge.DefaultTrustedPeers...)
		}
		for _, s := range proxies {
			if p, err := parsePrefix(s); err == nil { // validated on load
				lim.Trusted = append(lim.Trusted, p)
			}
		}
	}
	return lim, nil
}

// rateLimits returns the rate limits of cfg over fc: a class set by a flag
// wins over the file.
func rateLimits(cfg Config, fc *FileConfig) edge.RateLimits {
	out := cfg.RateLimits
	f := fc.Limits.Rates
	out.Disabled = out.Disabled || f.Disabled
	out.Services = out.Services || f.Services
	for c, r := range f.classes() {
		if out.Rates[c] != (edge.Rate{}) {
			continue
		}
		switch {
		case r.Attempts < 0:
			out.Rates[c] = edge.Unlimited
		case r.Attempts > 0:
			out.Rates[c] = edge.Rate{Events: r.Attempts, Per: r.Per, Burst: r.Burst}
		}
	}
	return out
}

// ParseRate reads a rate as the flags write it: "N/PER" or "N/PER,BURST"
// (PER a duration such as 1s, 1m or 1h, or s, m, h for one of them), or
// "off" for no limit.
func ParseRate(s string) (edge.Rate, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return edge.Unlimited, nil
	}
	bad := fmt.Errorf("rate %q: want N/PER[,BURST] (e.g. 300/1m,50) or off", s)
	n, rest, ok := strings.Cut(s, "/")
	if !ok {
		return edge.Rate{}, bad
	}
	per, burst, hasBurst := strings.Cut(rest, ",")
	var r edge.Rate
	var err error
	if r.Events, err = strconv.Atoi(n); err != nil || r.Events <= 0 {
		return edge.Rate{}, bad
	}
	switch per {
	case "s", "m", "h":
		per = "1" + per
	}
	if r.Per, err = time.ParseDuration(per); err != nil || r.Per <= 0 {
		return edge.Rate{}, bad
	}
	if hasBurst {
		if r.Burst, err = strconv.Atoi(burst); err != nil || r.Burst <= 0 {
			return edge.Rate{}, bad
		}
	}
	return r, nil
}
