package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/sluicehq/sluice/server"
	"github.com/sluicehq/sluice/services/edge"
)

// rateFlag is a flag.Value that parses into a Rate.
type rateFlag struct{ r *edge.Rate }

func (f rateFlag) String() string {
	if f.r == nil || *f.r == (edge.Rate{}) {
		return ""
	}
	return f.r.String()
}

func (f rateFlag) Set(s string) error {
	r, err := server.ParseRate(s)
	if err != nil {
		return err
	}
	*f.r = r
	return nil
}

// limitFlags binds the flags of the connection and rate limits.
func limitFlags(fs *flag.FlagSet, cfg *server.Config) {
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", 0, fmt.Sprintf("open connections one client address may hold; 0: limits.connections_per_address, else %d; -1: no limit (SLUICE_MAX_CONNS_PER_ADDR)", edge.DefaultConnsPerAddress))
	fs.StringVar(&cfg.TrustedPeers, "trusted-peers", "", "comma-separated addresses or CIDR prefixes (reverse proxies) whose connections are not capped per address; none: no one; default limits.trusted_peers, else loopback (SLUICE_TRUSTED_PEERS)")
	for _, c := range []edge.RateClass{edge.RateCreate, edge.RateTyping, edge.RateMessages, edge.RateWrites} {
		fs.Var(rateFlag{&cfg.RateLimits.Rates[c]}, "rate-"+c.String(),
			fmt.Sprintf("calls of class %s one user may make, N/PER[,BURST] or off; default limits.rates.%s, else %s (SLUICE_RATE_%s)",
				c, c, edge.DefaultRates[c], strings.ToUpper(c.String())))
	}
}

// limitEnv maps the limit flags to their environment variables.
var limitEnv = map[string]string{
	"max-conns-per-addr": "SLUICE_MAX_CONNS_PER_ADDR",
	"trusted-peers":      "SLUICE_TRUSTED_PEERS",
	"rate-create":        "SLUICE_RATE_CREATE",
	"rate-typing":        "SLUICE_RATE_TYPING",
	"rate-messages":      "SLUICE_RATE_MESSAGES",
	"rate-writes":        "SLUICE_RATE_WRITES",
}

// parseFlags parses args into fs, then sets each limit flag not given on
// the command line from its environment variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	for name, env := range limitEnv {
		if v := os.Getenv(env); v != "" && !given[name] && fs.Lookup(name) != nil {
			if err := fs.Set(name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	}
	return errors.Join(errs...)
}
