package kit

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/sync/engine"
)

// JobDeps are what a module's job handlers are built from.
type JobDeps struct {
	Store *engine.Store
	// Mail is the server's SMTP configuration (zero: no e-mail).
	Mail   MailConfig
	Logger *slog.Logger
}

// Jobs returns the job handlers of modules by kind, or an error if two
// modules handle the same kind.
func Jobs(modules []Module, d JobDeps) (map[string]engine.JobHandler, error) {
	out := map[string]engine.JobHandler{}
	for _, m := range modules {
		if m.Jobs == nil {
			continue
		}
		for kind, h := range m.Jobs(d) {
			if _, dup := out[kind]; dup {
				return nil, fmt.Errorf("modules: two handlers of job kind %q", kind)
			}
			out[kind] = h
		}
	}
	return out, nil
}

// MailConfig is how the server reaches its SMTP server, from the flags
// and the file's mail section; modules that send e-mail (the reference
// app's notifications) get it in JobDeps. The zero value disables e-mail.
type MailConfig struct {
	// Addr is host:port of the SMTP server; empty disables e-mail.
	Addr string
	// Security is how the session is protected: "starttls" (upgrade the
	// connection and refuse a server that does not offer it; submission,
	// port 587), "tls" (TLS from the first byte; port 465) or "none" (a
	// local relay or a sink). Empty means "starttls" when Username is set,
	// else "none".
	Security string
	// Username and Password authenticate the session (AUTH PLAIN), sent
	// only over TLS. Empty Username: no authentication.
	Username, Password string
	// TLS configures the TLS of the session: nil verifies the server's
	// certificate against the system roots for the host of Addr.
	TLS *tls.Config
	// From is the sender, "Name <address>" or a bare address. Empty means
	// noreply@<Domain>.
	From string
	// Domain is the recipients' domain: a user is mailed at <user id>@Domain.
	Domain string
	// Timeout bounds one delivery, from dialing to the end of DATA. Zero
	// means 10s.
	Timeout time.Duration
}
