package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/edge"
)

// Each limit flag takes its environment variable when not given on the
// command line; a bad value is an error naming the variable.
func TestLimitFlagsFromEnv(t *testing.T) {
	t.Setenv("SLUICE_MAX_CONNS_PER_ADDR", "7")
	t.Setenv("SLUICE_RATE_MESSAGES", "2000/1s,2000")
	t.Setenv("SLUICE_TRUSTED_PEERS", "none")
	fs, cfg, _ := flags("serve", io.Discard)
	if err := parseFlags(fs, []string{"-trusted-peers", "10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if cfg.MaxConnsPerAddr != 7 || cfg.TrustedPeers != "10.0.0.0/8" ||
		cfg.RateLimits.Rates[edge.RateMessages] != (edge.Rate{Events: 2000, Per: time.Second, Burst: 2000}) {
		t.Errorf("config = %d %q %+v", cfg.MaxConnsPerAddr, cfg.TrustedPeers, cfg.RateLimits.Rates)
	}
	t.Setenv("SLUICE_RATE_TYPING", "lots")
	fs, _, _ = flags("serve", io.Discard)
	if err := parseFlags(fs, nil); err == nil || !strings.Contains(err.Error(), "SLUICE_RATE_TYPING") {
		t.Errorf("bad env value: %v", err)
	}
}
