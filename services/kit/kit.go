// Package kit is what a service package needs to plug into the Sluice
// server: a Module describes one service (its contract name, how to mount
// its handler, its policies, and the read rules and key scopes of the
// records it owns), and Deps are the shared parts a handler is built from.
//
// A service package exports one Module; the server is assembled from a list
// of them (services.New), so mounting, health, reflection, policies, read
// rules and scopes cannot drift apart. Check refuses a list in which a
// procedure of a mounted service has no policy.
package kit

import (
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/access"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/edge"
	"github.com/sluicehq/sluice/sync/engine"
)

// Module is one service of the server, or a set of rules with no RPCs.
type Module struct {
	// Name is the fully-qualified proto service name, e.g.
	// "sluice.user.v1.UserService"; empty for a module that serves no RPC
	// (it only contributes read rules or scopes).
	Name string
	// Mount returns the path and handler of the service, built from d and
	// mounted with opts (the shared interceptors). Required with Name.
	Mount func(d *Deps, opts ...connect.HandlerOption) (string, http.Handler)
	// Policies has one policy per procedure of the service.
	Policies []authz.Policy
	// ReadRules are the read rules of the scope types whose records the
	// module owns.
	ReadRules []authz.ReadRule
	// SelfScoped lists key types whose records are their own scope.
	SelfScoped []string
	// Under maps key types `type/<parent id>/<id>` to the scope type of
	// their parent: a record `message/7/42` lives in scope `channel/7`.
	Under map[string]string
	// Presence lists scope types whose streams learn who else is online.
	Presence []string
	// RateClasses names the rate class (edge.RateTyping, edge.RateMessages,
	// ...) of the module's procedures that are not plain writes; the others
	// are found from their proto (read-only procedures and streams are not
	// limited; Create… and Invite… are "create"; the rest "writes").
	RateClasses map[string]edge.RateClass
	// Jobs returns the handlers of the background job kinds the module
	// enqueues (Tx.Enqueue), run by the server's worker.
	Jobs func(d JobDeps) map[string]engine.JobHandler
	// NeedsNATS says the service's calls depend on NATS (live streams):
	// health reports it NOT_SERVING while NATS has been down beyond a
	// grace.
	NeedsNATS bool
}

// Deps are the shared parts services are built from. The server builds each
// once and hands the same Deps to every Module's Mount.
type Deps struct {
	Store    *engine.Store
	Streamer *engine.Streamer
	// Hub carries ephemeral signals (typing).
	Hub *engine.Hub
	// Presence tracks who streams which scope; nil disables presence.
	Presence *engine.Presence
	// PresenceTypes are the scope types of every module's Presence.
	PresenceTypes []string
	Policies      *authz.Table
	Reads         *authz.ReadRules
	Valid         *edge.Validator
	Scopes        *access.Scopes
	Loader        *access.Loader
	Sessions      *auth.Sessions
	// Streams bounds the life of server streams (shutdown, session end).
	Streams *auth.Streams
	// Login checks usernames and passwords (the authenticator chain).
	Login auth.PasswordAuthenticator
	// Auth configures login throttling and trusted proxies.
	Auth   auth.ServiceConfig
	Logger *slog.Logger
	// Traced says calls are traced (an interceptor sees every message a
	// stream sends), so a stream must send each message through
	// connect-go.
	Traced bool
}

// Procedures returns the procedures ("/pkg.Service/Method") of the proto
// service name, as linked into this binary, or an error if no such service
// is linked.
func Procedures(name string) ([]string, error) {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", name, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", name)
	}
	out := make([]string, 0, sd.Methods().Len())
	for i := range sd.Methods().Len() {
		out = append(out, "/"+name+"/"+string(sd.Methods().Get(i).Name()))
	}
	return out, nil
}

// Check refuses modules that cannot be served: a service named twice or
// without Mount, a procedure of a mounted service without a policy, a policy
// for a procedure no mounted service has, or two policies for one
// procedure. It is what keeps the server from starting with a procedure
// nobody decided about (default deny).
func Check(modules []Module) error {
	var problems []string
	served := map[string]bool{}
	var procs []string
	for _, m := range modules {
		if m.Name == "" {
			if len(m.Policies) > 0 || m.Mount != nil {
				problems = append(problems, "a module without a service name has policies or a handler")
			}
			continue
		}
		if served[m.Name] {
			problems = append(problems, m.Name+" is listed twice")
			continue
		}
		served[m.Name] = true
		if m.Mount == nil {
			problems = append(problems, m.Name+" has no handler")
		}
		ps, err := Procedures(m.Name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		procs = append(procs, ps...)
	}
	have := map[string]int{}
	for _, m := range modules {
		for _, p := range m.Policies {
			have[p.Procedure]++
			if !slices.Contains(procs, p.Procedure) {
				problems = append(problems, "policy for "+p.Procedure+", which no listed service serves")
			}
		}
	}
	var missing []string
	for _, p := range procs {
		switch have[p] {
		case 0:
			missing = append(missing, p)
		case 1:
		default:
			problems = append(problems, fmt.Sprintf("%d policies for %s", have[p], p))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		problems = append(problems, "procedures without a policy: "+strings.Join(missing, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("modules: %s", strings.Join(problems, "; "))
	}
	return nil
}
