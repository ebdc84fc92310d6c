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
	fs.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", 0, fmt.Sprintf("open connections one client address may hold; 0: limits.connections_per_address, else %d; -1: no limit", edge.DefaultConnsPerAddress))
	fs.StringVar(&cfg.TrustedPeers, "trusted-peers", "", "comma-separated addresses or CIDR prefixes (reverse proxies) whose connections are not capped per address; none: no one; default limits.trusted_peers, else loopback")
	for _, c := range []edge.RateClass{edge.RateCreate, edge.RateTyping, edge.RateMessages, edge.RateWrites} {
		fs.Var(rateFlag{&cfg.RateLimits.Rates[c]}, "rate-"+c.String(),
			fmt.Sprintf("calls of class %s one user may make, N/PER[,BURST] or off; default limits.rates.%s, else %s",
				c, c, edge.DefaultRates[c]))
	}
}

// envAliases are the flags whose environment variable predates the
// SLUICE_ rule (the names every Postgres and NATS tool knows).
var envAliases = map[string]string{
	"database-url": "DATABASE_URL",
	"nats-url":     "NATS_URL",
}

// envName returns the environment variable of a flag: SLUICE_ and the
// flag's name in upper case with underscores (-max-conns-per-addr is
// SLUICE_MAX_CONNS_PER_ADDR), except for envAliases.
func envName(flagName string) string {
	if v, ok := envAliases[flagName]; ok {
		return v
	}
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags is the one place where sluiced's options are resolved: a flag
// given on the command line wins, else its environment variable (envName),
// else its default. (The config file, -config, is read by the server; a
// flag or variable that is set wins over the file, which fills in the
// rest.) A bad value in a variable is an error naming the variable. The
// help (-h) lists every flag with its variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.VisitAll(func(f *flag.Flag) { f.Usage += " [$" + envName(f.Name) + "]" })
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok && v != "" && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
		}
	})
	return errors.Join(errs...)
}
