// Command sluiced is the Sluice server.
//
//	sluiced                 serve on :8080 (same as `sluiced serve`)
//	sluiced serve [flags]   serve
//	sluiced migrate         apply database migrations and exit
//	sluiced policy          print the policy table and read rules
//	sluiced seed [flags]    create demo data through the RPCs (development users)
//	sluiced hash-password   read a password on stdin, print its argon2id hash
//	sluiced service-credential NAME
//	                        print a new service token and its config entry
//
// Configuration comes from flags, with environment variables as defaults:
// DATABASE_URL, NATS_URL, SLUICE_ADDR, SLUICE_USERS, SLUICE_NATS_PREFIX,
// SLUICE_DATA_DIR, SLUICE_LOG_LEVEL, SLUICE_CONFIG, SLUICE_TLS_CERT,
// SLUICE_TLS_KEY, SLUICE_TLS_CLIENT_CA, SLUICE_SMTP_ADDR, SLUICE_MAIL_FROM,
// SLUICE_MAIL_DOMAIN, SLUICE_MAX_CONNS_PER_ADDR, SLUICE_TRUSTED_PEERS,
// SLUICE_RATE_CREATE, SLUICE_RATE_TYPING, SLUICE_RATE_MESSAGES,
// SLUICE_RATE_WRITES.
package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/server"
	"github.com/sluicehq/sluice/services"
	"github.com/sluicehq/sluice/services/auth"
)

// devUsers is the development users file: userA, userB, userC and admin
// with the deepstream tutorial's passwords. Development only.
//
//go:embed devusers.yml
var devUsers []byte

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sluiced:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "migrate":
		return migrateCmd(ctx, args, stderr)
	case "policy":
		return printPolicy(stdout)
	case "seed":
		return seedCmd(ctx, args, stdout, stderr)
	case "hash-password":
		return hashPassword(stdin, stdout)
	case "service-credential":
		return serviceCredential(args, stdout)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: sluiced [serve|migrate|policy|seed|hash-password|service-credential] [flags]")
		return nil
	}
	return fmt.Errorf("unknown command %q (serve, migrate, policy, seed, hash-password, service-credential)", cmd)
}

// flags binds the configuration flags, with environment defaults.
func flags(name string, stderr io.Writer) (*flag.FlagSet, *server.Config, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &server.Config{DevUsers: devUsers, Web: webApp()}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "listen address; :8080 for every interface")
	fs.BoolVar(&cfg.InsecureDevUsers, "insecure-dev-users", false, "serve the built-in development users (public passwords) on an address other than loopback; never for anything others can reach")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "Postgres URL; default localhost:5432/sluice, else (when nothing answers there) a private cluster under -data-dir")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "NATS URL; default: embedded in the process")
	fs.StringVar(&cfg.NATSPrefix, "nats-prefix", "sluice", "NATS subject prefix shared by one deployment")
	fs.StringVar(&cfg.UsersFile, "users", "", "users file, YAML or JSON in deepstream's shape; default: the development users")
	fs.StringVar(&cfg.ConfigFile, "config", "", "config file, YAML: auth chain, sessions, throttling, services, TLS, CORS; see docs/sluice.example.yml")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate file: serve HTTPS")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS key file")
	fs.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "CA for client certificates of service principals (mutual TLS)")
	fs.BoolVar(&cfg.StdHTTP2, "std-http2", false, "serve HTTP/2 with Go's net/http server instead of Sluice's own (a fallback; costs more CPU and memory per stream)")
	fs.StringVar(&cfg.SMTPAddr, "smtp-addr", "", "SMTP server host:port for notification e-mail; empty disables e-mail")
	fs.StringVar(&cfg.MailFrom, "mail-from", "", "sender of notification e-mail; default noreply@<mail-domain>")
	fs.StringVar(&cfg.MailDomain, "mail-domain", "", "recipients are <user id>@<mail-domain>")
	fs.StringVar(&cfg.DataDir, "data-dir", ".sluice", "directory of the private Postgres cluster")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", 24*time.Hour, "absolute session lifetime: no session outlives it, however much it is used")
	cfg.SessionIdle = server.DefaultSessionIdle
	fs.Func("session-idle", "end sessions unused this long (sliding expiry within -session-ttl; an open stream is use); 0: never (default 2h)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		if d <= 0 {
			d = -1 // Config: negative is none
		}
		cfg.SessionIdle = d
		return nil
	})
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", 15*time.Second, "stream heartbeat interval")
	fs.DurationVar(&cfg.Retention, "retention", 7*24*time.Hour, "change history retention")
	fs.Int64Var(&cfg.KeepPerScope, "keep-per-scope", 10000, "changes kept per scope")
	fs.IntVar(&cfg.StreamLimits.PerSession, "max-streams-per-session", 1024, "open streams one session may hold on this instance; -1: no limit")
	fs.IntVar(&cfg.StreamLimits.PerPrincipal, "max-streams-per-user", 4096, "open streams one user may hold over all their sessions on this instance; -1: no limit")
	fs.IntVar(&cfg.StreamLimits.TargetsPerPrincipal, "max-targets-per-user", 16384, "records and scopes one user may follow over all their open streams on this instance; -1: no limit")
	fs.IntVar(&cfg.MaxSnapshot, "max-snapshot", 10000, "records a stream may receive in a snapshot of a whole scope; larger scopes need a window (ScopeTarget.limit)")
	fs.StringVar(&cfg.OpsAddr, "ops-addr", "", "listen address of /metrics (Prometheus), /healthz and /readyz; keep it on loopback or a private network; empty: off")
	fs.StringVar(&cfg.DebugAddr, "debug-addr", "", "listen address of the Go profiler (/debug/pprof/); keep it on loopback; empty: off")
	limitFlags(fs, cfg)
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "log format: text or json")
	return fs, cfg, level
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs, cfg, level := flags("serve", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := server.NewLogger(*level, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if tracingConfigured() {
		tp, err := newTracerProvider(ctx)
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tp.Shutdown(sctx)
		}()
		cfg.TracerProvider = tp
		log.Info("tracing to OTLP", "endpoint", envOr("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")))
	}
	app, err := server.Open(ctx, *cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = app.Shutdown(sctx)
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("sluiced serving", "addr", ln.Addr().String())
	if cfg.DebugAddr != "" {
		stopDebug, _, err := server.ServeDebug(cfg.DebugAddr, log)
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = ln.Close()
			_ = app.Shutdown(sctx)
			return err
		}
		defer stopDebug()
	}
	if cfg.OpsAddr != "" {
		stopOps, _, err := server.ServeAside("ops", cfg.OpsAddr, app.OpsHandler(), log)
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = ln.Close()
			_ = app.Shutdown(sctx)
			return err
		}
		defer stopOps()
	}
	errc := make(chan error, 1)
	go func() { errc <- app.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if serr := app.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	return err
}

func migrateCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs, cfg, level := flags("migrate", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := server.NewLogger(*level, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	if err := server.Migrate(ctx, *cfg); err != nil {
		return err
	}
	log.Info("migrations applied")
	return nil
}

func seedCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfg, level := flags("seed", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := server.NewLogger(*level, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	app, err := server.Open(ctx, *cfg)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = app.Shutdown(sctx)
	}()
	return seed(ctx, app, stdout)
}

func printPolicy(w io.Writer) error {
	table, reads, err := services.NewPolicyTable(nil, services.Modules(nil))
	if err != nil {
		return err
	}
	if err := table.Print(w); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return reads.Print(w)
}

func hashPassword(stdin io.Reader, stdout io.Writer) error {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("empty password on stdin")
	}
	h, err := auth.HashPassword(pw, auth.DefaultArgon2)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

func serviceCredential(args []string, stdout io.Writer) error {
	if len(args) != 1 || args[0] == "" {
		return errors.New("usage: sluiced service-credential NAME")
	}
	token, hash, err := authz.NewServiceToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# Give the token to the service (Authorization: Bearer <token>); keep it secret:\n%s\n\n", token)
	fmt.Fprintf(stdout, "# Add to the config file (only the hash is stored):\nservices:\n  - name: %s\n    secret_hash: %q\n", args[0], hash)
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
