package main

import (
	"flag"
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

// Every flag has one environment variable, by one rule (SLUICE_ and the
// name, DATABASE_URL and NATS_URL kept), applied in one place; the command
// line wins; -h names each variable.
func TestEveryFlagHasItsVariable(t *testing.T) {
	t.Setenv("SLUICE_SESSION_TTL", "90m")
	t.Setenv("SLUICE_INSECURE_DEV_USERS", "1")
	t.Setenv("DATABASE_URL", "postgres://db.example/x")
	t.Setenv("SLUICE_MAX_STREAMS_PER_USER", "77")
	t.Setenv("SLUICE_ADDR", "127.0.0.1:1")
	var help strings.Builder
	fs, cfg, level := flags("serve", &help)
	t.Setenv("SLUICE_LOG_LEVEL", "warn")
	if err := parseFlags(fs, []string{"-addr", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if cfg.SessionTTL != 90*time.Minute || !cfg.InsecureDevUsers || cfg.DatabaseURL != "postgres://db.example/x" ||
		cfg.StreamLimits.PerPrincipal != 77 || *level != "warn" {
		t.Errorf("from the environment: ttl %v, insecure %v, db %q, streams %d, level %q",
			cfg.SessionTTL, cfg.InsecureDevUsers, cfg.DatabaseURL, cfg.StreamLimits.PerPrincipal, *level)
	}
	if cfg.Addr != "127.0.0.1:2" {
		t.Errorf("addr %q: the command line must win over SLUICE_ADDR", cfg.Addr)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(f.Usage, "[$"+envName(f.Name)+"]") {
			t.Errorf("-%s: help does not name %s", f.Name, envName(f.Name))
		}
	})
	fs, _, _ = flags("serve", &help)
	if err := parseFlags(fs, []string{"-h"}); err == nil || !strings.Contains(help.String(), "[$SLUICE_SESSION_TTL]") {
		t.Errorf("-h: %v\n%s", err, help.String())
	}
}
