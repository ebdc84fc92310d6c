package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	connectcors "connectrpc.com/cors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/internal/devpg"
	"github.com/sluicehq/sluice/internal/h2"
	"github.com/sluicehq/sluice/migrations"
	"github.com/sluicehq/sluice/services"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/services/ops"
	"github.com/sluicehq/sluice/sync/engine"
)

// Config is the configuration of one sluiced instance. The zero value of
// every field is the documented default.
type Config struct {
	// Modules are the app's services, served beside the framework's
	// (services.Framework: auth, sync, access, admin, user). Nil: the
	// reference app (services.ReferenceApp).
	Modules []kit.Module
	// Web is served at every path that is not an RPC (the app's web
	// client: index.html for page paths, its files as they are), each
	// response with the security headers of the web app (CSP, nosniff,
	// frame denial, HSTS over TLS). Nil serves nothing there (404).
	Web fs.FS
	// DevUsers is a users file (YAML, deepstream shape) used when neither
	// UsersFile nor an auth chain in ConfigFile is set; its passwords are
	// taken to be public, so it is refused on an address other than
	// loopback unless InsecureDevUsers is set. Nil: none, and Open fails
	// without UsersFile or an auth chain.
	DevUsers []byte
	// Addr is the listen address. Default ":8080".
	Addr string
	// DebugAddr, if set, is where `sluiced serve` serves the Go profiler
	// (net/http/pprof). It has no authentication: keep it on loopback.
	DebugAddr string
	// LogFormat is text (the default) or json; it applies to the logger
	// sluiced builds (Logger, when set, is used as it is).
	LogFormat string
	// OpsAddr, if set, is where `sluiced serve` serves /metrics
	// (Prometheus), /healthz and /readyz. No authentication: keep it on
	// loopback or a private network.
	OpsAddr string
	// MetricsSampleEvery is how often the metrics that query growing
	// tables (live sessions, the changes table's size and oldest change)
	// read Postgres; scrapes in between get the last answer. Default 15s.
	MetricsSampleEvery time.Duration
	// DatabaseURL is the Postgres URL. Default: localhost:5432 (database
	// sluice, created if missing), else, when nothing answers there, a
	// private cluster under DataDir. A server on localhost:5432 that
	// refuses the login is an error, not a reason to fall back.
	DatabaseURL string
	// NATSURL is the NATS URL. Default: a NATS server embedded in the
	// process.
	NATSURL string
	// NATSPrefix is the subject prefix shared by the instances of one
	// deployment. Default "sluice".
	NATSPrefix string
	// UsersFile is the users file (deepstream shape). Default: the
	// development users file shipped in the binary, which is refused on
	// an address other than loopback unless InsecureDevUsers is set.
	UsersFile string
	// InsecureDevUsers serves the development users (public passwords)
	// on any address. Never set it for anything reachable by others.
	InsecureDevUsers bool
	// ConfigFile is the configuration file (auth chain, sessions,
	// throttling, services, TLS, CORS; see docs/sluice.example.yml).
	// Default none.
	ConfigFile string
	// TLSCert and TLSKey serve HTTPS (HTTP/2 over TLS) instead of h2c;
	// they override the config file's tls section.
	TLSCert, TLSKey string
	// TLSClientCA makes the server verify client certificates against this
	// CA (mutual TLS for service principals); optional for other callers.
	TLSClientCA string
	// StdHTTP2 serves HTTP/2 with net/http's own server instead of
	// Sluice's (internal/h2, the default), which writes a stream's flushes
	// to the socket from the handler's goroutine. A fallback, should a
	// client meet a difference between the two.
	StdHTTP2 bool
	// DataDir holds the private Postgres cluster. Default "./.sluice".
	DataDir string
	// localDatabase replaces localhost:5432 as the server probed before
	// a private cluster is started (tests).
	localDatabase string
	// SessionTTL is the absolute lifetime of a session: no session
	// outlives it, however much it is used. Default 24h.
	SessionTTL time.Duration
	// SessionIdle ends a session unused for this long: sliding expiry
	// within SessionTTL (a call, or an open stream, is use).
	// auth.sessions.idle in the config file overrides it. Default
	// DefaultSessionIdle (2h); negative: no idle expiry.
	SessionIdle time.Duration
	// Heartbeat is the idle time after which streams get a heartbeat.
	// Default 15s.
	Heartbeat time.Duration
	// RelayGrace is how long a change may stay unacknowledged before the
	// relay republishes it. Default 2s.
	RelayGrace time.Duration
	// RelayInterval is the time between relay passes. Default 1s.
	RelayInterval time.Duration
	// Retention bounds history by age. Default 7 days.
	Retention time.Duration
	// KeepPerScope bounds history per scope. Default 10000.
	KeepPerScope int64
	// StreamBuffer bounds the live changes queued per stream. Default 1024.
	StreamBuffer int
	// TracerProvider, when set, traces every call from the RPC through
	// its queries, commit and publication to the fan-out on every
	// instance. sluiced serve sets it from the OTEL_* environment.
	TracerProvider trace.TracerProvider
	// MaxSnapshot bounds the records of a whole-scope snapshot; a stream
	// asking for more must use a window (ScopeTarget.limit). Default 10000.
	MaxSnapshot int
	// SessionCheck is how often streams re-check their session. Default 5s.
	SessionCheck time.Duration
	// StreamLimits bound the streams one session and one user hold open
	// on this instance (defaults 1024 and 4096 streams, 16384 targets).
	StreamLimits auth.StreamLimits
	// BodyTimeout bounds the time a client takes to send a request body.
	// Default 30s.
	BodyTimeout time.Duration
	// MaxConnsPerAddr bounds the open connections of one client address
	// (see edge.ConnLimits). Zero: the config file's, else 256; -1: none.
	MaxConnsPerAddr int
	// TrustedPeers lists (comma-separated) the addresses or CIDR prefixes
	// whose connections are not counted per address; "none" trusts no
	// one. Empty: the config file's, else loopback.
	TrustedPeers string
	// RateLimits bound each user's calls with side effects per procedure
	// class; a zero class takes the config file's rate, else the default
	// (edge.DefaultRates).
	RateLimits edge.RateLimits
	// SMTPAddr is the SMTP server (host:port) notification e-mail goes
	// through; empty disables e-mail. MailFrom and MailDomain: the sender,
	// and the domain of recipients (<user id>@MailDomain).
	SMTPAddr, MailFrom, MailDomain string
	// NoPublish leaves changes unpublished for the relay (a test seam that
	// simulates a crash between commit and publish).
	NoPublish bool
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// App is one running sluiced instance: it owns the pool, the NATS
// connection (and the embedded NATS server or private Postgres cluster it
// started) and every background goroutine. Call Shutdown.
type App struct {
	cfg Config
	log *slog.Logger

	cluster    *devpg.Cluster
	ns         *natsserver.Server
	pool       *pgxpool.Pool
	nc         *nats.Conn
	natsClosed chan struct{} // closed by nats.go once nc is closed
	store      *engine.Store
	pub        *engine.Publisher
	relay      *engine.Relay
	worker     *engine.Worker
	presence   *engine.Presence
	hub        *engine.Hub
	streamer   *engine.Streamer
	services   *services.Server
	metrics    *ops.Metrics
	bg         *background // the engine's running components
	http       *http.Server
	h2         *h2.Server // nil with StdHTTP2
	auth       *AuthSetup
	file       *FileConfig

	// limited is the listener Serve bounds per client address (its
	// refusals are counted in sluice_connections_refused_total).
	limited atomic.Pointer[edge.LimitListener]

	httpMu   sync.Mutex // guards http, h2 and stopping
	stopping bool

	stopOnce sync.Once
	stopErr  error
}

// Open connects to (or starts) Postgres and NATS, applies migrations and
// assembles the services. On error everything started so far is stopped.
func Open(ctx context.Context, cfg Config) (_ *App, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: cfg.Logger, natsClosed: make(chan struct{}), bg: &background{log: cfg.Logger}}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.close(sctx)
		}
	}()

	if cfg.ConfigFile != "" {
		if a.file, err = LoadConfigFile(cfg.ConfigFile); err != nil {
			return nil, err
		}
	} else {
		a.file = &FileConfig{}
	}
	if a.auth, err = OpenAuth(a.file, cfg, a.log); err != nil {
		return nil, err
	}
	if j, ok := a.auth.Tokens.(*auth.JWTAuthenticator); ok {
		// First started, so stopped last: verifying tokens needs it
		// until the server has stopped.
		a.bg.start("jwks refresh", j.Run)
	}
	creds := make([]authz.ServiceCredential, 0, len(a.file.Services))
	for _, sc := range a.file.Services {
		creds = append(creds, authz.ServiceCredential{Name: sc.Name, TokenHash: sc.SecretHash})
	}
	serviceCreds, err := authz.NewServiceCredentials(creds)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	dbURL, err := a.database(ctx)
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, dbURL); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if pcfg.MaxConns < 16 {
		pcfg.MaxConns = 16
	}
	if cfg.TracerProvider != nil {
		pcfg.ConnConfig.Tracer = engine.QueryTracer(cfg.TracerProvider)
	}
	if a.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	if a.nc, err = a.connectNATS(); err != nil {
		return nil, err
	}

	a.pub = engine.NewPublisher(a.nc, a.pool, engine.PublisherConfig{Prefix: cfg.NATSPrefix, Logger: a.log, TracerProvider: cfg.TracerProvider})
	var notifier engine.Notifier = a.pub
	if cfg.NoPublish {
		notifier = nil
	}
	a.store = engine.NewStore(a.pool, engine.StoreConfig{Notifier: notifier, Logger: a.log, TracerProvider: cfg.TracerProvider})
	a.hub = engine.NewHub(a.nc, a.store, engine.HubConfig{Prefix: cfg.NATSPrefix, Logger: a.log, TracerProvider: cfg.TracerProvider})
	a.relay = engine.NewRelay(a.nc, a.pool, engine.RelayConfig{
		Prefix:       cfg.NATSPrefix,
		Interval:     cfg.RelayInterval,
		Grace:        cfg.RelayGrace,
		Retention:    cfg.Retention,
		KeepPerScope: cfg.KeepPerScope,
		Logger:       a.log,
	})
	a.presence = engine.NewPresence(a.pool, a.hub, engine.PresenceConfig{Logger: a.log})
	a.streamer = engine.NewStreamer(a.store, a.hub, engine.StreamerConfig{Heartbeat: cfg.Heartbeat, Buffer: cfg.StreamBuffer, MaxSnapshot: cfg.MaxSnapshot, Logger: a.log})
	a.metrics = ops.NewMetrics(services.Procedures())
	a.metrics.Registry().MustRegister(ops.NewEngineCollector(ops.Sources{
		Hub: a.hub, Streamer: a.streamer, Publisher: a.pub, Relay: a.relay, Pool: a.pool, NATS: a.nc, Logger: a.log,
		SampleEvery: cfg.MetricsSampleEvery, SessionIdle: a.auth.Sessions.Idle,
	}))
	a.metrics.Registry().MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sluice_connections_refused_total",
		Help: "Connections closed on accept because their client address held the most allowed (-max-conns-per-addr).",
	}, func() float64 {
		if l := a.limited.Load(); l != nil {
			return float64(l.Refused())
		}
		return 0
	}))
	a.services, err = services.New(services.Config{
		Modules:        cfg.Modules,
		Metrics:        a.metrics,
		TracerProvider: cfg.TracerProvider,
		Health: ops.HealthConfig{
			Postgres:      a.pool.Ping,
			NATSDownSince: a.hub.DegradedSince,
		},
		Store:        a.store,
		Streamer:     a.streamer,
		Hub:          a.hub,
		Presence:     a.presence,
		Login:        a.auth.Login,
		Tokens:       a.auth.Tokens,
		Sessions:     a.auth.Sessions,
		Auth:         a.auth.Service,
		Services:     serviceCreds,
		SessionCheck: cfg.SessionCheck,
		StreamLimits: cfg.StreamLimits,
		BodyTimeout:  cfg.BodyTimeout,
		RateLimits:   rateLimits(cfg, a.file),
		Logger:       a.log,
	})
	if err != nil {
		return nil, err
	}
	mail, err := mailConfig(cfg, a.file.Mail)
	if err != nil {
		return nil, err
	}
	jobs, err := kit.Jobs(services.Modules(cfg.Modules), kit.JobDeps{Store: a.store, Mail: mail, Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.worker = engine.NewWorker(a.pool, jobs, engine.WorkerConfig{Logger: a.log})
	// Stopped in the reverse order (see background).
	a.bg.start("publisher", a.pub.Run)
	a.bg.start("hub", a.hub.Run)
	a.bg.start("presence", a.presence.Run)
	if !cfg.NoPublish {
		a.bg.start("relay", a.relay.Run)
	}
	a.bg.start("worker", a.worker.Run)
	return a, nil
}

// database returns the Postgres URL to use, starting a private cluster
// when no server is reachable and none was configured.
func (a *App) database(ctx context.Context) (string, error) {
	if a.cfg.DatabaseURL != "" {
		return a.cfg.DatabaseURL, nil
	}
	local := a.cfg.localDatabase
	if local == "" {
		local = localPostgres
	}
	err := ensureDatabase(ctx, local)
	if err == nil {
		a.log.Info("using local postgres", "at", redactedURL(local))
		return local, nil
	}
	if refused := localServerError(local, err); refused != nil {
		return "", refused
	}
	a.log.Info("no postgres on localhost:5432; starting a private cluster", "reason", err)
	dir := a.cfg.DataDir
	if dir == "" {
		dir = ".sluice"
	}
	abs, err := filepath.Abs(filepath.Join(dir, "pg"))
	if err != nil {
		return "", err
	}
	if a.cluster, err = devpg.Start(ctx, abs, a.log); err != nil {
		return "", fmt.Errorf("private postgres: %w", err)
	}
	return a.cluster.URL(), nil
}

// ensureDatabase connects to url, creating its database first if the
// server says it does not exist (SQLSTATE 3D000).
func ensureDatabase(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" {
		return err
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	db := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		if !errors.As(err, &pgErr) || pgErr.Code != "42P04" {
			return fmt.Errorf("create database: %w", err)
		}
	}
	return nil
}

// Migrate applies the schema migrations to the database cfg selects (see
// Config.DatabaseURL), starting and stopping a private cluster if that is
// the one selected.
func Migrate(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &App{cfg: cfg, log: cfg.Logger}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.close(sctx)
	}()
	url, err := a.database(ctx)
	if err != nil {
		return err
	}
	return migrate(ctx, url)
}

// migrate applies the schema migrations.
func migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect for migrations: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Migrate(ctx, conn); err != nil {
		return err
	}
	return nil
}

// connectNATS connects to NATS_URL, or to a NATS server embedded in this
// process when none is configured.
func (a *App) connectNATS() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("sluiced"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		// A connection that answers no ping for 15 s is dead even if TCP
		// says otherwise (a stalled server, a black hole): reconnect,
		// possibly to another server of the cluster. Streams are served
		// from Postgres meanwhile (the Hub's health check).
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			a.log.Warn("nats disconnected", "err", err)
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(a.natsClosed) }),
	}
	if a.cfg.NATSURL != "" {
		nc, err := nats.Connect(a.cfg.NATSURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect nats: %w", err)
		}
		return nc, nil
	}
	ns, err := natsserver.NewServer(&natsserver.Options{DontListen: true, NoSigs: true, NoLog: true, MaxPayload: 8 << 20})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats did not start")
	}
	a.ns = ns
	nc, err := nats.Connect("", append(opts, nats.InProcessServer(ns))...)
	if err != nil {
		return nil, fmt.Errorf("connect embedded nats: %w", err)
	}
	return nc, nil
}

// OpsHandler returns the handler of the ops listener: /metrics, /healthz
// and /readyz.
func (a *App) OpsHandler() http.Handler {
	return ops.Handler(a.metrics, a.services.Health())
}

// Handler returns the HTTP handler of the instance: the services and the
// embedded web app, behind CORS for the configured browser origins, with the
// verified client certificate's name (mutual TLS) put in the request context.
func (a *App) Handler() http.Handler {
	// RPCs go to the services; every other path is the embedded web app.
	svc, web := a.services.Handler(), webHandler(a.cfg.Web)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isRPCPath(strings.TrimPrefix(r.URL.Path, "/")) {
			svc.ServeHTTP(w, r)
			return
		}
		web.ServeHTTP(w, r)
	})
	inner := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
			r = r.WithContext(authz.WithPeerCertName(r.Context(), cn))
		}
		inner.ServeHTTP(w, r)
	})
	if origins := a.file.CORS.Origins; len(origins) > 0 {
		h = cors.New(cors.Options{
			AllowedOrigins: origins,
			AllowedMethods: connectcors.AllowedMethods(),
			AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization"),
			ExposedHeaders: connectcors.ExposedHeaders(),
			MaxAge:         7200,
		}).Handler(h)
	}
	return h
}

// tlsConfig returns the TLS configuration, or nil to serve h2c.
func (a *App) tlsConfig() (*tls.Config, error) {
	certFile, keyFile, caFile := a.cfg.TLSCert, a.cfg.TLSKey, a.cfg.TLSClientCA
	if certFile == "" && keyFile == "" {
		certFile, keyFile = a.file.TLS.Cert, a.file.TLS.Key
	}
	if caFile == "" {
		caFile = a.file.TLS.ClientCA
	}
	if certFile == "" && keyFile == "" {
		if caFile != "" {
			return nil, errors.New("tls: a client CA needs a server certificate and key")
		}
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both the certificate and the key are required")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("tls client ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls client ca: no certificate found")
		}
		tc.ClientCAs = pool
		// Users authenticate with tokens; only services present certificates.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}

// Serve serves on ln until Shutdown: HTTPS (HTTP/2 and 1.1) when TLS is
// configured, else HTTP/1.1 and h2c (development, or behind a terminating
// proxy). There is no server-wide read or write timeout: it would cut
// streams.
func (a *App) Serve(ln net.Listener) error {
	tc, err := a.tlsConfig()
	if err != nil {
		return err
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if tc != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Streams per connection: enough for a proxy or a backend sharing
		// a connection, while one connection cannot hold thousands (a
		// client past it opens another connection or waits).
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: 250},
		ErrorLog:  slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		TLSConfig: tc,
	}
	var h2s *h2.Server
	if !a.cfg.StdHTTP2 {
		h2s = &h2.Server{
			MaxConcurrentStreams: uint32(srv.HTTP2.MaxConcurrentStreams),
			MaxHeaderListSize:    uint32(srv.MaxHeaderBytes),
			IdleTimeout:          srv.IdleTimeout,
			Logger:               a.log,
		}
		h2s.Configure(srv)
	}
	lim, err := connLimits(a.cfg, a.file)
	if err != nil {
		return err
	}
	// Counted per TCP peer, before TLS: a connection over the limit costs
	// no handshake.
	limited := edge.NewLimitListener(ln, lim)
	a.limited.Store(limited)
	ln = limited
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	// Serve and Shutdown may run on different goroutines, in either order.
	a.httpMu.Lock()
	if a.stopping {
		a.httpMu.Unlock()
		_ = ln.Close()
		return nil
	}
	if h2s != nil && tc == nil {
		// h2c connections skip net/http's per-connection buffers.
		ln = h2s.Split(ln, srv)
	}
	a.http, a.h2 = srv, h2s
	a.httpMu.Unlock()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops in reverse order: stop accepting, end streams (with
// Unavailable, "resume"), drain NATS, close the pool, stop what Open
// started. Calls after the first return the first call's result.
func (a *App) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.shutdown(ctx) })
	return a.stopErr
}

func (a *App) shutdown(ctx context.Context) error {
	var err error
	a.httpMu.Lock()
	a.stopping = true
	srv, h2s := a.http, a.h2
	a.httpMu.Unlock()
	if srv != nil {
		done := make(chan error, 1)
		go func() {
			err := srv.Shutdown(ctx)
			if h2s != nil {
				// Cleartext HTTP/2 connections are h2s's alone.
				err = errors.Join(err, h2s.Wait(ctx))
			}
			done <- err
		}()
		a.services.Shutdown()
		err = <-done
	} else if a.services != nil {
		a.services.Shutdown()
	}
	a.close(ctx)
	return err
}

func (a *App) close(ctx context.Context) {
	// The worker, relay, presence (its leaves need NATS), hub, publisher
	// and JWKS refresh, in that order; then NATS, the pool and the servers.
	a.bg.stop()
	if a.nc != nil {
		// Drain delivers what is in flight, then closes the connection.
		if err := a.nc.Drain(); err == nil {
			select {
			case <-a.natsClosed:
			case <-ctx.Done():
			}
		}
		a.nc.Close()
	}
	if a.pool != nil {
		a.pool.Close()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
	if a.auth != nil {
		a.auth.Close()
	}
	if a.cluster != nil {
		if err := a.cluster.Stop(ctx); err != nil {
			a.log.Warn("stop private postgres", "err", err)
		}
	}
}
