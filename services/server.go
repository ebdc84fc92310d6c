// Package services assembles the RPC services of Sluice into one HTTP
// handler from a list of modules (package kit): the Framework services
// every server runs and the app's own (the reference app by default),
// every service behind the same interceptors (error mapping,
// authentication and admission by policy), plus gRPC health and reflection.
package services

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/authz"
	optionsv1 "github.com/sluicehq/sluice/gen/sluice/options/v1"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/kit"
	"github.com/sluicehq/sluice/services/ops"
	"github.com/sluicehq/sluice/sync/engine"
)

// Config holds what the services need; package server builds every part.
type Config struct {
	// Modules are the app's services, served beside the Framework ones.
	// Nil means the reference app (ReferenceApp).
	Modules []kit.Module
	Store   *engine.Store
	// Streamer runs record streams.
	Streamer *engine.Streamer
	// Hub carries ephemeral signals (typing).
	Hub *engine.Hub
	// Presence tracks who is online in the scope types that modules name;
	// nil disables presence.
	Presence *engine.Presence
	// Login checks usernames and passwords (the authenticator chain).
	// Required.
	Login auth.PasswordAuthenticator
	// Tokens verifies bearer JWTs. Nil accepts Sluice session tokens only.
	Tokens auth.TokenAuthenticator
	// Sessions configures session lifetime, idle expiry and caching.
	Sessions auth.SessionsConfig
	// Auth configures login throttling and trusted proxies.
	Auth auth.ServiceConfig
	// Services are the service credentials (backend processes).
	Services *authz.ServiceCredentials
	// SessionCheck is how often streams re-check their session. Zero
	// means 5s.
	SessionCheck time.Duration
	// StreamLimits bound the streams a user holds open on this instance.
	StreamLimits auth.StreamLimits
	// RateLimits bound the calls with side effects of each principal, by
	// procedure class (see RateClasses).
	RateLimits edge.RateLimits
	// BodyTimeout bounds the time a client takes to send a request body
	// (a unary request, or the request of a stream); past it the read
	// fails and the call ends. Zero means 30s.
	BodyTimeout time.Duration
	// Metrics, when set, counts and times every call.
	Metrics *ops.Metrics
	// TracerProvider, when set, traces every call (a server span per RPC,
	// W3C trace context from the caller's headers).
	TracerProvider trace.TracerProvider
	// Health says what the instance's health depends on; New fills in
	// the services. Served as gRPC health and by the ops listener.
	Health ops.HealthConfig
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Server is the assembled set of services.
type Server struct {
	handler  http.Handler
	health   *ops.Health
	streams  *auth.Streams
	policies *authz.Table
	reads    *authz.ReadRules
}

// Modules returns the modules a server with the app's modules serves: the
// Framework ones first. Nil app means the reference app.
func Modules(app []kit.Module) []kit.Module {
	if app == nil {
		app = ReferenceApp()
	}
	return append(Framework(), app...)
}

// Policies returns the policy of every procedure of modules.
func Policies(modules []kit.Module) []authz.Policy {
	var out []authz.Policy
	for _, m := range modules {
		out = append(out, m.Policies...)
	}
	return out
}

// NewScopes returns the key → scope mapping of every record type of
// modules.
func NewScopes(modules []kit.Module) *access.Scopes {
	var self []string
	for _, m := range modules {
		self = append(self, m.SelfScoped...)
	}
	s := access.NewScopes(self...)
	for _, m := range modules {
		for typ, parent := range m.Under {
			s.Under(typ, parent)
		}
	}
	return s
}

// Procedures returns every RPC procedure declared in the sluice.* protos
// linked into this binary, as "/package.Service/Method".
func Procedures() []string {
	var out []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if !strings.HasPrefix(string(fd.Package()), "sluice.") {
			return true
		}
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				out = append(out, "/"+string(sd.FullName())+"/"+string(sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	slices.Sort(out)
	return out
}

// ServerOnly returns the procedures marked (sluice.options.v1.server_only)
// in the protos linked into this binary.
func ServerOnly() map[string]bool {
	out := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		for i := 0; i < fd.Services().Len(); i++ {
			sd := fd.Services().Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				if on, _ := proto.GetExtension(md.Options(), optionsv1.E_ServerOnly).(bool); on {
					out["/"+string(sd.FullName())+"/"+string(md.Name())] = true
				}
			}
		}
		return true
	})
	return out
}

// NewPolicyTable builds the policy table and read rules of modules. It
// refuses modules that leave a procedure of a served service without a
// policy, naming it (default deny; see kit.Check). Procedures marked
// server_only in the protos admit only service principals.
func NewPolicyTable(log *slog.Logger, modules []kit.Module) (*authz.Table, *authz.ReadRules, error) {
	if err := kit.Check(modules); err != nil {
		return nil, nil, err
	}
	policies := Policies(modules)
	serverOnly := ServerOnly()
	for i := range policies {
		policies[i].ServerOnly = serverOnly[policies[i].Procedure]
	}
	table, err := authz.NewTable(log, policies...)
	if err != nil {
		return nil, nil, err
	}
	var rules []authz.ReadRule
	for _, m := range modules {
		rules = append(rules, m.ReadRules...)
	}
	reads, err := authz.NewReadRules(rules...)
	if err != nil {
		return nil, nil, err
	}
	return table, reads, nil
}

// New assembles the Framework services and the app's modules. It fails if
// any procedure of a served service lacks a policy.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	modules := Modules(cfg.Modules)
	policies, reads, err := NewPolicyTable(log, modules)
	if err != nil {
		return nil, err
	}
	sessions := auth.NewSessions(cfg.Store, cfg.Sessions)
	if cfg.Metrics != nil {
		cfg.Metrics.WatchSessionCache(func() (uint64, uint64) {
			c := sessions.CacheStats()
			return c.Hits, c.Misses
		})
	}
	var interceptors []connect.Interceptor
	if cfg.TracerProvider != nil {
		// Outermost: the span covers the whole call.
		tracing, err := otelconnect.NewInterceptor(otelconnect.WithTracerProvider(cfg.TracerProvider), otelconnect.WithoutMetrics())
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		interceptors = append(interceptors, tracing)
	}
	if cfg.Metrics != nil {
		// Outside the error interceptor: it sees the codes clients see.
		interceptors = append(interceptors, cfg.Metrics.Interceptor())
	}
	opts := edge.HandlerOptions(append(interceptors,
		edge.ErrorInterceptor(log),
		edge.DeadlineInterceptor(edge.UnaryTimeout),
		auth.NewInterceptor(sessions, policies, cfg.Tokens, cfg.Services),
		newRateLimiter(cfg.RateLimits, modules).Interceptor(),
		edge.IdempotencyInterceptor(),
		edge.CallerInterceptor(),
	)...)
	scopes := NewScopes(modules)
	d := &kit.Deps{
		Store:    cfg.Store,
		Streamer: cfg.Streamer,
		Hub:      cfg.Hub,
		Presence: cfg.Presence,
		Policies: policies,
		Reads:    reads,
		Valid:    edge.NewValidator(),
		Scopes:   scopes,
		Loader:   access.NewLoader(cfg.Store, scopes),
		Sessions: sessions,
		Streams:  auth.NewStreams(sessions, cfg.SessionCheck, cfg.StreamLimits, log),
		Login:    cfg.Login,
		Auth:     cfg.Auth,
		Logger:   log,
		Traced:   cfg.TracerProvider != nil,
	}
	for _, m := range modules {
		d.PresenceTypes = append(d.PresenceTypes, m.Presence...)
	}

	mux := http.NewServeMux()
	hc := cfg.Health
	hc.Services, hc.NeedNATS = nil, nil
	for _, m := range modules {
		if m.Name == "" {
			continue
		}
		mux.Handle(m.Mount(d, opts...))
		hc.Services = append(hc.Services, m.Name)
		if m.NeedsNATS {
			hc.NeedNATS = append(hc.NeedNATS, m.Name)
		}
	}
	names := hc.Services
	health := ops.NewHealth(hc)
	mux.Handle(grpchealth.NewHandler(health))
	reflector := grpcreflect.NewStaticReflector(names...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	// Every response, those connect-go writes on its own included
	// (unsupported media type, a body over the limit), tells browsers not
	// to sniff its content type.
	//
	// A request body must arrive within bodyTimeout: a client sending a
	// byte now and then cannot hold a handler and its connection. The
	// deadline goes once the body is read, so streams live on.
	bodyTimeout := cmp.Or(cfg.BodyTimeout, 30*time.Second)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(bodyTimeout)) == nil {
				b := &deadlineBody{ReadCloser: r.Body, rc: rc}
				if r.ProtoMajor == 1 {
					// The rest of a body cut off is still on its way: the
					// connection cannot carry another request.
					b.timedOut = func() { w.Header().Set("Connection", "close") }
				}
				r.Body = b
			}
		}
		// Origin, Host and session cookie, for cookie sessions.
		r = auth.WithBrowser(r)
		mux.ServeHTTP(&nosniffWriter{ResponseWriter: w}, r)
	})
	return &Server{handler: handler, health: health, streams: d.Streams, policies: policies, reads: reads}, nil
}

// Health returns the instance's health checker (for the ops listener).
func (s *Server) Health() *ops.Health { return s.health }

// Handler returns the HTTP handler serving every service.
func (s *Server) Handler() http.Handler { return s.handler }

// Shutdown reports every service NOT_SERVING (draining) and ends every
// open stream with Unavailable, the code clients treat as "resume with
// your cursors".
func (s *Server) Shutdown() {
	s.health.Drain()
	s.streams.Shutdown()
}

// deadlineBody is a request body read under a deadline that it clears
// when the body ends. timedOut, if set, runs when the deadline cuts the
// body off.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	timedOut func()
	done     bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case b.done:
	case err == io.EOF:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{}) // best effort: the body is over
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.done = true
		if b.timedOut != nil {
			b.timedOut()
		}
	}
	return n, err
}

// nosniffWriter adds X-Content-Type-Options: nosniff to a response when
// its headers go out, unless the handler set it already.
type nosniffWriter struct {
	http.ResponseWriter
	sent bool
}

func (w *nosniffWriter) ensure() {
	if !w.sent {
		w.sent = true
		if h := w.Header(); h.Get("X-Content-Type-Options") == "" {
			h.Set("X-Content-Type-Options", "nosniff")
		}
	}
}

func (w *nosniffWriter) WriteHeader(code int) {
	w.ensure()
	w.ResponseWriter.WriteHeader(code)
}

func (w *nosniffWriter) Write(b []byte) (int, error) {
	w.ensure()
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written, headers first.
func (w *nosniffWriter) Flush() {
	w.ensure()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *nosniffWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
