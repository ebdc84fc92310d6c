// Package services assembles the RPC services of Sluice into one HTTP
// handler: every service behind the same interceptors (error mapping,
// authentication and admission by policy), plus gRPC health and reflection.
package services

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/gen/sluice/access/v1/accessv1connect"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	"github.com/sluicehq/sluice/gen/sluice/auth/v1/authv1connect"
	"github.com/sluicehq/sluice/gen/sluice/channel/v1/channelv1connect"
	"github.com/sluicehq/sluice/gen/sluice/color/v1/colorv1connect"
	"github.com/sluicehq/sluice/gen/sluice/message/v1/messagev1connect"
	optionsv1 "github.com/sluicehq/sluice/gen/sluice/options/v1"
	"github.com/sluicehq/sluice/gen/sluice/org/v1/orgv1connect"
	"github.com/sluicehq/sluice/gen/sluice/sync/v1/syncv1connect"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/admin"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/channel"
	"github.com/sluicehq/sluice/services/color"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/services/membership"
	"github.com/sluicehq/sluice/services/message"
	"github.com/sluicehq/sluice/services/notify"
	"github.com/sluicehq/sluice/services/org"
	"github.com/sluicehq/sluice/services/syncsvc"
	"github.com/sluicehq/sluice/services/user"
	"github.com/sluicehq/sluice/sync"
)

// Config holds what the services need; cmd/sluiced builds every part.
type Config struct {
	Store    *sync.Store
	Streamer *sync.Streamer
	// Hub carries ephemeral signals (typing).
	Hub *sync.Hub
	// Presence tracks who is online in channels; nil disables presence.
	Presence *sync.Presence
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
	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger
}

// Server is the assembled set of services.
type Server struct {
	handler  http.Handler
	streams  *auth.Streams
	policies *authz.Table
	reads    *authz.ReadRules
}

// Policies returns the policy of every procedure Sluice serves.
func Policies() []authz.Policy {
	var out []authz.Policy
	out = append(out, auth.Policies()...)
	out = append(out, user.Policies()...)
	out = append(out, syncsvc.Policies()...)
	out = append(out, access.Policies()...)
	out = append(out, color.Policies()...)
	out = append(out, admin.Policies()...)
	out = append(out, org.Policies()...)
	out = append(out, channel.Policies()...)
	out = append(out, message.Policies()...)
	return out
}

// ReadRules returns the read rule of every scope type.
func ReadRules() []authz.ReadRule {
	rules := append([]authz.ReadRule{membership.ProfileReadRule(), membership.UserOrgsReadRule()}, color.ReadRules()...)
	rules = append(rules, notify.ReadRule())
	return append(rules, membership.ReadRules()...)
}

// SelfScoped lists the key types whose records are their own scope.
func SelfScoped() []string {
	self := append([]string{"user"}, color.SelfScoped()...)
	return append(self, membership.SelfScoped...)
}

// NewScopes returns the key → scope mapping of every record type.
func NewScopes() *access.Scopes {
	s := access.NewScopes(SelfScoped()...)
	for typ, parent := range membership.Under {
		s.Under(typ, parent)
	}
	s.Under("notification", "notifications") // notification/<user>/<message id>
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

// NewPolicyTable builds the policy table and refuses, naming them, any
// procedure without a policy (default deny). Procedures marked server_only
// in the protos admit only service principals.
func NewPolicyTable(log *slog.Logger) (*authz.Table, *authz.ReadRules, error) {
	policies := Policies()
	serverOnly := ServerOnly()
	for i := range policies {
		policies[i].ServerOnly = serverOnly[policies[i].Procedure]
	}
	table, err := authz.NewTable(log, policies...)
	if err != nil {
		return nil, nil, err
	}
	if missing := table.Missing(Procedures()); len(missing) > 0 {
		return nil, nil, fmt.Errorf("procedures without a policy: %s", strings.Join(missing, ", "))
	}
	reads, err := authz.NewReadRules(ReadRules()...)
	if err != nil {
		return nil, nil, err
	}
	return table, reads, nil
}

// New assembles the services. It fails if any procedure lacks a policy.
func New(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	policies, reads, err := NewPolicyTable(log)
	if err != nil {
		return nil, err
	}
	valid := edge.NewValidator()
	sessions := auth.NewSessions(cfg.Store, cfg.Sessions)
	opts := edge.HandlerOptions(
		edge.ErrorInterceptor(log),
		edge.DeadlineInterceptor(edge.UnaryTimeout),
		auth.NewInterceptor(sessions, policies, cfg.Tokens, cfg.Services),
		edge.IdempotencyInterceptor(),
	)
	scopes := NewScopes()
	loader := access.NewLoader(cfg.Store, scopes)
	streams := auth.NewStreams(sessions, cfg.SessionCheck, log)
	syncSvc := syncsvc.NewService(cfg.Store, cfg.Streamer, streams, policies, reads, valid, scopes, loader, syncsvc.Config{
		Presence:      cfg.Presence,
		PresenceTypes: []string{"channel"},
		Logger:        log,
	})

	mux := http.NewServeMux()
	mux.Handle(authv1connect.NewAuthServiceHandler(auth.NewService(cfg.Login, sessions, policies, valid, cfg.Auth), opts...))
	mux.Handle(userv1connect.NewUserServiceHandler(user.NewService(cfg.Store, policies, valid), opts...))
	mux.Handle(syncsvc.NewHandler(syncSvc, opts...))
	mux.Handle(accessv1connect.NewAccessServiceHandler(access.NewService(policies, reads, loader, cfg.Streamer, streams, valid), opts...))
	mux.Handle(colorv1connect.NewColorServiceHandler(color.NewService(cfg.Store, policies, valid), opts...))
	mux.Handle(adminv1connect.NewAdminServiceHandler(admin.NewService(sessions, policies, valid), opts...))
	mux.Handle(orgv1connect.NewOrgServiceHandler(org.NewService(cfg.Store, policies, valid), opts...))
	mux.Handle(channelv1connect.NewChannelServiceHandler(channel.NewService(cfg.Store, policies, loader, valid), opts...))
	mux.Handle(messagev1connect.NewMessageServiceHandler(message.NewService(cfg.Store, policies, loader, cfg.Hub, valid), opts...))

	names := []string{authv1connect.AuthServiceName, userv1connect.UserServiceName, syncv1connect.SyncServiceName,
		accessv1connect.AccessServiceName, colorv1connect.ColorServiceName, adminv1connect.AdminServiceName,
		orgv1connect.OrgServiceName, channelv1connect.ChannelServiceName, messagev1connect.MessageServiceName}
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(names...)))
	reflector := grpcreflect.NewStaticReflector(names...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return &Server{handler: mux, streams: streams, policies: policies, reads: reads}, nil
}

// Handler returns the HTTP handler serving every service.
func (s *Server) Handler() http.Handler { return s.handler }

// Shutdown ends every open stream with Unavailable, the code clients treat
// as "resume with your cursors".
func (s *Server) Shutdown() { s.streams.Shutdown() }
