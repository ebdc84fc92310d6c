package server

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/authz"
	"github.com/sluicehq/sluice/services/auth"
	"github.com/sluicehq/sluice/services/kit"
)

// FileConfig is the configuration file (`sluiced -config sluice.yml`):
// authentication, service credentials, TLS and CORS. docs/sluice.example.yml
// documents every field. Relative paths in it are relative to the file's
// directory; LoadConfigFile makes them absolute.
type FileConfig struct {
	Auth AuthFileConfig `yaml:"auth"`
	// Services are the credentials of backend service principals.
	Services []ServiceCredential `yaml:"services" rule:"dive"`
	TLS      TLSConfig           `yaml:"tls"`
	CORS     CORSConfig          `yaml:"cors"`
	Mail     MailFileConfig      `yaml:"mail"`
	Limits   LimitsFileConfig    `yaml:"limits"`
	// ForceInsecure allows the `none` authenticator on an address other
	// than loopback. Never set it in production.
	ForceInsecure bool `yaml:"force_insecure"`
}

// AuthFileConfig is the auth section.
type AuthFileConfig struct {
	// Chain lists the authenticators in the order Login asks them; a `jwt`
	// entry verifies bearer JWTs instead. Empty: the -users file, else the
	// development users.
	Chain    []AuthenticatorConfig `yaml:"chain" rule:"dive"`
	Sessions SessionsFileConfig    `yaml:"sessions"`
	Throttle ThrottleFileConfig    `yaml:"throttle"`
}

// AuthenticatorConfig is one entry of auth.chain. Type selects which other
// fields apply; a field of another type is an error.
type AuthenticatorConfig struct {
	// Type is file, http, jwt or none.
	Type string `yaml:"type"`

	// file: Path is the users file; ReloadInterval how often it is checked
	// for changes (default 1s).
	Path           string        `yaml:"path"`
	ReloadInterval time.Duration `yaml:"reload_interval" rule:"gte=0"`

	// http: the webhook URL, the timeout of one call (default 3s) and
	// headers sent with every call (e.g. a shared secret).
	URL     string            `yaml:"url"`
	Timeout time.Duration     `yaml:"timeout" rule:"gte=0"`
	Headers map[string]string `yaml:"headers"`

	// jwt: see auth.JWTConfig.
	Issuer             string        `yaml:"issuer"`
	Audience           stringList    `yaml:"audience"`
	JWKSURL            string        `yaml:"jwks_url"`
	KeyFiles           []string      `yaml:"key_files"`
	JWKS               string        `yaml:"jwks"`
	Algorithms         []string      `yaml:"algorithms" rule:"dive,oneof=RS256 ES256 EdDSA"`
	ClockSkew          time.Duration `yaml:"clock_skew" rule:"gte=0"`
	RefreshInterval    time.Duration `yaml:"refresh_interval" rule:"gte=0"`
	MinRefetchInterval time.Duration `yaml:"min_refetch_interval" rule:"gte=0"`
	Claims             ClaimsConfig  `yaml:"claims"`
}

// ClaimsConfig maps JWT claims to the principal.
type ClaimsConfig struct {
	ID         string   `yaml:"id"`
	Roles      string   `yaml:"roles"`
	ServerData []string `yaml:"server_data"`
	ClientData []string `yaml:"client_data"`
}

// SessionsFileConfig is auth.sessions.
type SessionsFileConfig struct {
	// TTL is the absolute session lifetime. Default: -session-ttl (24h).
	TTL time.Duration `yaml:"ttl" rule:"gte=0"`
	// Idle ends sessions unused for this long (at least 1m): sliding
	// expiry within TTL. Default: -session-idle (2h).
	Idle time.Duration `yaml:"idle" rule:"omitempty,min=1m"`
	// CacheTTL bounds how long another instance may accept a revoked
	// session (at most 1m). Default 2s.
	CacheTTL time.Duration `yaml:"cache_ttl" rule:"gte=0,lte=1m"`
}

// ThrottleFileConfig is auth.throttle.
type ThrottleFileConfig struct {
	Disabled       bool           `yaml:"disabled"`
	PerUserAddress RateFileConfig `yaml:"per_user_address"`
	PerUser        RateFileConfig `yaml:"per_user"`
	PerAddress     RateFileConfig `yaml:"per_address"`
	// KnownFor is how long an address a user logged in from is exempt
	// from per_user for that user (default 720h; negative: never).
	KnownFor time.Duration `yaml:"known_for"`
	MaxKeys  int           `yaml:"max_keys" rule:"gte=0"`
	// TrustedProxies are addresses or CIDR prefixes of reverse proxies
	// whose X-Forwarded-For is believed.
	TrustedProxies []string `yaml:"trusted_proxies" rule:"dive,ipprefix"`
}

// RateFileConfig is a token bucket: attempts per period, burst at once.
type RateFileConfig struct {
	Attempts int           `yaml:"attempts" rule:"gte=-1"`
	Per      time.Duration `yaml:"per" rule:"gte=0"`
	Burst    int           `yaml:"burst" rule:"gte=0"`
}

// ServiceCredential is one backend service allowed to act as a service
// principal: its name and the argon2id or bcrypt hash of its secret.
type ServiceCredential struct {
	Name       string `yaml:"name" rule:"servicename"`
	SecretHash string `yaml:"secret_hash"`
}

// TLSConfig is the tls section: the server certificate and key, and
// optionally the CA that client certificates must chain to.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// MailFileConfig is the mail section: how notification e-mail reaches the
// provider's SMTP server. Fields left empty fall back to the -smtp-addr,
// -mail-from and -mail-domain flags.
type MailFileConfig struct {
	Addr   string `yaml:"addr"`
	From   string `yaml:"from"`
	Domain string `yaml:"domain"`
	// Security is starttls (submission, port 587), tls (port 465) or none
	// (a local relay); default starttls when a username is set.
	Security string `yaml:"security" rule:"omitempty,oneof=starttls tls none"`
	Username string `yaml:"username"`
	// PasswordEnv names the environment variable holding the password:
	// secrets stay out of the file.
	PasswordEnv string `yaml:"password_env"`
	// CAFile, if set, is the CA bundle the server's certificate must chain
	// to instead of the system roots.
	CAFile string `yaml:"ca_file"`
}

// CORSConfig is the cors section: the browser origins allowed to call.
type CORSConfig struct {
	Origins []string `yaml:"origins" rule:"dive,origin"`
}

// stringList is a YAML string or list of strings.
type stringList []string

func (s *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var v string
		if err := n.Decode(&v); err != nil {
			return err
		}
		*s = stringList{v}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*s = v
	return nil
}

// maxConfigBytes bounds the configuration file.
const maxConfigBytes = 1 << 20

// LoadConfigFile reads and validates the configuration file at path.
// Unknown keys are errors (a misspelt setting must not be silently
// ignored), and each validation error names its field, e.g.
// "auth.chain[1].url: required".
func LoadConfigFile(path string) (*FileConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigBytes)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	fc, err := ParseConfig(data, filepath.Dir(abs))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return fc, nil
}

// ParseConfig parses and validates a configuration; relative paths are
// resolved against dir.
func ParseConfig(data []byte, dir string) (*FileConfig, error) {
	fc := &FileConfig{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	fc.resolve(dir)
	if err := fc.validate(); err != nil {
		return nil, err
	}
	return fc, nil
}

// resolve makes the paths of fc absolute, relative to dir.
func (fc *FileConfig) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i := range fc.Auth.Chain {
		e := &fc.Auth.Chain[i]
		abs(&e.Path)
		for j := range e.KeyFiles {
			abs(&e.KeyFiles[j])
		}
	}
	abs(&fc.TLS.Cert)
	abs(&fc.TLS.Key)
	abs(&fc.TLS.ClientCA)
	abs(&fc.Mail.CAFile)
}

// fieldsOf lists, per authenticator type, the fields an entry may set.
var fieldsOf = map[string][]string{
	"file": {"type", "path", "reload_interval"},
	"http": {"type", "url", "timeout", "headers"},
	"jwt": {"type", "issuer", "audience", "jwks_url", "key_files", "jwks", "algorithms", "clock_skew",
		"refresh_interval", "min_refetch_interval", "claims"},
	"none": {"type"},
}

var serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// validate checks fc and returns every problem found, each naming its
// field.
func (fc *FileConfig) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	// Rules of one field are `rule` tags on the structs (tagErrors);
	// what follows relates fields to each other.
	errs = append(errs, fc.tagErrors()...)

	if fc.Mail.Security == "none" && fc.Mail.Username != "" {
		bad("mail.security", "none would send the password without TLS")
	}
	if (fc.Mail.Username == "") != (fc.Mail.PasswordEnv == "") {
		bad("mail.username", "username and password_env go together")
	}

	jwts, noneAt, passwords := 0, -1, 0
	for i, e := range fc.Auth.Chain {
		at := fmt.Sprintf("auth.chain[%d]", i)
		allowed, ok := fieldsOf[e.Type]
		if !ok {
			bad(at+".type", "must be one of file, http, jwt, none (got %q)", e.Type)
			continue
		}
		for _, name := range setFields(e) {
			if !slices.Contains(allowed, name) {
				bad(at+"."+name, "not used by type %s", e.Type)
			}
		}
		switch e.Type {
		case "file":
			passwords++
			if e.Path == "" {
				bad(at+".path", "required")
			}
		case "http":
			passwords++
			if !isHTTPURL(e.URL) {
				bad(at+".url", "required: an absolute http or https URL")
			}
			for k := range e.Headers {
				if k == "" || strings.ContainsAny(k, " :\r\n") {
					bad(at+".headers", "invalid header name %q", k)
				}
			}
		case "jwt":
			jwts++
			if jwts > 1 {
				bad(at+".type", "only one jwt authenticator is supported")
			}
			if e.Issuer == "" {
				bad(at+".issuer", "required")
			}
			if len(e.Audience) == 0 || slices.Contains(e.Audience, "") {
				bad(at+".audience", "required")
			}
			if e.JWKSURL == "" && len(e.KeyFiles) == 0 && e.JWKS == "" {
				bad(at+".jwks_url", "one of jwks_url, key_files or jwks is required")
			}
			if e.JWKSURL != "" && !isHTTPURL(e.JWKSURL) {
				bad(at+".jwks_url", "must be an absolute http or https URL")
			}
		case "none":
			passwords++
			if noneAt < 0 {
				noneAt = i
			}
		}
	}
	if noneAt >= 0 {
		for i := noneAt + 1; i < len(fc.Auth.Chain); i++ {
			if t := fc.Auth.Chain[i].Type; t == "file" || t == "http" || t == "none" {
				bad(fmt.Sprintf("auth.chain[%d]", noneAt), "none accepts every login, so it must be the last password authenticator")
				break
			}
		}
	}
	if len(fc.Auth.Chain) > 0 && passwords == 0 {
		bad("auth.chain", "needs at least one password authenticator (file, http or none) for Login")
	}

	s := fc.Auth.Sessions
	if s.TTL > 0 && s.Idle > s.TTL {
		bad("auth.sessions.idle", "longer than auth.sessions.ttl")
	}

	t := fc.Auth.Throttle
	for name, r := range map[string]RateFileConfig{"per_user_address": t.PerUserAddress, "per_user": t.PerUser, "per_address": t.PerAddress} {
		at := "auth.throttle." + name
		if r.Attempts < 0 { // -1 ("no limit") is for limits.rates only
			bad(at+".attempts", "must not be negative")
		}
		if r.Attempts > 0 && r.Per == 0 {
			bad(at+".per", "must be a positive duration when attempts is set")
		}
		if r.Attempts == 0 && (r.Per != 0 || r.Burst != 0) {
			bad(at+".attempts", "required when per or burst is set")
		}
	}

	errs = append(errs, fc.Limits.validate()...)

	seen := map[string]bool{}
	for i, sc := range fc.Services {
		at := fmt.Sprintf("services[%d]", i)
		if seen[sc.Name] && sc.Name != "" {
			bad(at+".name", "duplicate service %q", sc.Name)
		}
		seen[sc.Name] = true
		if sc.SecretHash != "" {
			if _, err := authz.NewServiceCredentials([]authz.ServiceCredential{{Name: "x", TokenHash: sc.SecretHash}}); err != nil {
				bad(at+".secret_hash", "must be sha256:<64 hex digits> (sluiced service-credential %s)", sc.Name)
			}
		}
	}

	if (fc.TLS.Cert == "") != (fc.TLS.Key == "") {
		bad("tls.key", "tls.cert and tls.key go together")
	}
	if fc.TLS.ClientCA != "" && fc.TLS.Cert == "" {
		bad("tls.client_ca", "requires tls.cert and tls.key")
	}
	return errors.Join(errs...)
}

// setFields returns the YAML names of the fields of e that are set.
func setFields(e AuthenticatorConfig) []string {
	var out []string
	v := reflect.ValueOf(e)
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if !v.Field(i).IsZero() {
			out = append(out, name)
		}
	}
	return out
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func isOrigin(s string) bool {
	if s == "*" {
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// usesNone reports whether the chain has the none authenticator.
func (fc *FileConfig) usesNone() bool {
	return slices.ContainsFunc(fc.Auth.Chain, func(e AuthenticatorConfig) bool { return e.Type == "none" })
}

// CheckListen refuses the `none` authenticator on a listen address other
// than loopback, unless force_insecure is set.
func (fc *FileConfig) CheckListen(addr string) error {
	if fc == nil || !fc.usesNone() || fc.ForceInsecure || isLoopback(addr) {
		return nil
	}
	return fmt.Errorf("auth.chain: the none authenticator lets anyone log in as anyone; it is refused on %q (not loopback) unless force_insecure: true", addr)
}

// isLoopback reports whether the listen address addr accepts loopback
// connections only. An empty host (all interfaces) is not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// Authenticators builds the auth chain of fc: the password authenticator
// Login asks (nil if the chain is empty), the token authenticator of the
// jwt entry (nil if none) and a function that stops their background work
// (file watching), which the caller must call. The JWT authenticator's key
// refresh is the caller's to run (auth.JWTAuthenticator.Run). addr is the
// listen address (see CheckListen).
func (fc *FileConfig) Authenticators(addr string, log *slog.Logger) (_ auth.PasswordAuthenticator, _ auth.TokenAuthenticator, _ func(), err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var closers []func()
	closeAll := func() {
		for _, c := range slices.Backward(closers) {
			c()
		}
	}
	defer func() {
		if err != nil {
			closeAll() // what was opened before the error
		}
	}()
	if err := fc.CheckListen(addr); err != nil {
		return nil, nil, nil, err
	}
	var chain []auth.PasswordAuthenticator
	var tokens auth.TokenAuthenticator
	for i, e := range fc.Auth.Chain {
		at := fmt.Sprintf("auth.chain[%d]", i)
		switch e.Type {
		case "file":
			f, err := auth.OpenUsersFile(e.Path, auth.UsersFileConfig{Interval: e.ReloadInterval, Logger: log})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s.path: %w", at, err)
			}
			closers = append(closers, f.Close)
			chain = append(chain, f)
		case "http":
			h := http.Header{}
			for k, v := range e.Headers {
				h.Set(k, v)
			}
			a, err := auth.NewHTTPAuthenticator(auth.HTTPConfig{URL: e.URL, Timeout: e.Timeout, Header: h, Logger: log})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", at, err)
			}
			chain = append(chain, a)
		case "jwt":
			cfg := auth.JWTConfig{
				Issuer:             e.Issuer,
				Audience:           e.Audience,
				JWKSURL:            e.JWKSURL,
				Algorithms:         e.Algorithms,
				Leeway:             e.ClockSkew,
				IDClaim:            e.Claims.ID,
				RolesClaim:         e.Claims.Roles,
				ServerDataClaims:   e.Claims.ServerData,
				ClientDataClaims:   e.Claims.ClientData,
				RefreshInterval:    e.RefreshInterval,
				MinRefetchInterval: e.MinRefetchInterval,
				Logger:             log,
			}
			if e.JWKS != "" {
				cfg.JWKS = []byte(e.JWKS)
			}
			for j, path := range e.KeyFiles {
				data, err := os.ReadFile(path)
				if err != nil {
					return nil, nil, nil, fmt.Errorf("%s.key_files[%d]: %w", at, j, err)
				}
				keys, err := auth.ParsePublicKeys(data)
				if err != nil {
					return nil, nil, nil, fmt.Errorf("%s.key_files[%d]: %s: %w", at, j, path, err)
				}
				cfg.Keys = append(cfg.Keys, keys...)
			}
			j, err := auth.NewJWTAuthenticator(cfg)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %w", at, err)
			}
			tokens = j // its key refresh is run by the caller (JWTAuthenticator.Run)
		case "none":
			log.Warn("the none authenticator is on: anyone can log in as any user id (development only)")
			chain = append(chain, auth.None{})
		}
	}
	if len(chain) == 0 {
		return nil, tokens, closeAll, nil
	}
	return auth.NewChain(chain...), tokens, closeAll, nil
}

// SessionsConfig returns the session settings of fc; ttl applies when the
// file sets none (the -session-ttl flag).
func (fc *FileConfig) SessionsConfig(ttl time.Duration) auth.SessionsConfig {
	s := fc.Auth.Sessions
	if s.TTL > 0 {
		ttl = s.TTL
	}
	return auth.SessionsConfig{TTL: ttl, Idle: s.Idle, CacheTTL: s.CacheTTL}
}

// DefaultSessionIdle is the idle timeout of sessions when neither
// -session-idle nor auth.sessions.idle sets one.
const DefaultSessionIdle = 2 * time.Hour

// withIdle applies idle (Config.SessionIdle: 0 the default, negative none)
// to s unless the config file set an idle timeout. An idle timeout not
// shorter than the absolute lifetime would never act, and is dropped.
func withIdle(s auth.SessionsConfig, idle time.Duration) auth.SessionsConfig {
	if s.Idle > 0 {
		return s
	}
	switch {
	case idle < 0:
		idle = 0
	case idle == 0:
		idle = DefaultSessionIdle
	}
	if ttl := cmp.Or(s.TTL, 24*time.Hour); idle >= ttl {
		idle = 0
	}
	s.Idle = idle
	return s
}

// ServiceConfig returns the AuthService settings of fc: throttling and
// trusted proxies.
func (fc *FileConfig) ServiceConfig() auth.ServiceConfig {
	t := fc.Auth.Throttle
	cfg := auth.ServiceConfig{Throttle: auth.ThrottleConfig{
		Disabled:       t.Disabled,
		PerUserAddress: auth.Rate(t.PerUserAddress),
		PerUser:        auth.Rate(t.PerUser),
		PerAddress:     auth.Rate(t.PerAddress),
		KnownFor:       t.KnownFor,
		MaxKeys:        t.MaxKeys,
	}}
	for _, p := range t.TrustedProxies {
		if pp, err := parsePrefix(p); err == nil { // validated on load
			cfg.TrustedProxies = append(cfg.TrustedProxies, pp)
		}
	}
	return cfg
}

// AuthSetup is the authentication of one instance, ready for
// services.Config. The caller must call Close after the server stops.
type AuthSetup struct {
	// Login asks the authenticator chain.
	Login auth.PasswordAuthenticator
	// Tokens verifies bearer JWTs; nil if no jwt authenticator is set.
	Tokens   auth.TokenAuthenticator
	Sessions auth.SessionsConfig
	Service  auth.ServiceConfig
	close    func()
}

// Close stops the authenticators' background work.
func (s *AuthSetup) Close() {
	if s != nil && s.close != nil {
		s.close()
	}
}

// OpenAuth builds the authentication of an instance: the auth chain of fc
// (nil: no config file) if it has one, else the -users file (reloaded when
// it changes), else cfg.DevUsers (the development users). The -users flag and a
// chain in the file are exclusive.
func OpenAuth(fc *FileConfig, cfg Config, log *slog.Logger) (*AuthSetup, error) {
	if fc == nil {
		fc = &FileConfig{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(fc.Auth.Chain) > 0 && cfg.UsersFile != "" {
		return nil, errors.New("auth: both -users (SLUICE_USERS) and auth.chain in the config file are set; put the users file in the chain as {type: file, path: …}")
	}
	login, tokens, closeAll, err := fc.Authenticators(cfg.Addr, log)
	if err != nil {
		return nil, err
	}
	s := &AuthSetup{Login: login, Tokens: tokens, Sessions: withIdle(fc.SessionsConfig(cfg.SessionTTL), cfg.SessionIdle), Service: fc.ServiceConfig(), close: closeAll}
	if s.Login != nil {
		return s, nil
	}
	if cfg.UsersFile != "" {
		f, err := auth.OpenUsersFile(cfg.UsersFile, auth.UsersFileConfig{Logger: log})
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Login = f
		s.close = func() { f.Close(); closeAll() }
		return s, nil
	}
	if cfg.DevUsers == nil {
		s.Close()
		return nil, errors.New("auth: no users: set -users (SLUICE_USERS), auth.chain in the config file, or Config.DevUsers")
	}
	// Their passwords are public: loopback only, unless forced. An empty
	// address is an embedding caller serving a listener of its own.
	if cfg.Addr != "" && !isLoopback(cfg.Addr) && !cfg.InsecureDevUsers && !fc.ForceInsecure {
		s.Close()
		return nil, fmt.Errorf("auth: the built-in development users have public passwords and are served on loopback only, not on %s; set -users (SLUICE_USERS) or auth.chain, listen on 127.0.0.1, or pass -insecure-dev-users (SLUICE_INSECURE_DEV_USERS=1) to accept the risk", cfg.Addr)
	}
	users, err := auth.ParseUsers(cfg.DevUsers, ".yml")
	if err != nil {
		s.Close()
		return nil, err
	}
	log.Warn("using the DEVELOPMENT users file (public passwords); set -users or auth.chain for anything else")
	s.Login = users
	return s, nil
}

// mailConfig merges the mail section of the file with the flags (the file
// wins where it says something) and reads the password and CA bundle.
func mailConfig(cfg Config, f MailFileConfig) (kit.MailConfig, error) {
	pick := func(file, flag string) string {
		if file != "" {
			return file
		}
		return flag
	}
	m := kit.MailConfig{
		Addr:     pick(f.Addr, cfg.SMTPAddr),
		From:     pick(f.From, cfg.MailFrom),
		Domain:   pick(f.Domain, cfg.MailDomain),
		Security: f.Security,
		Username: f.Username,
	}
	if m.Addr != "" && m.Domain == "" {
		return m, errors.New("mail: a domain (-mail-domain or mail.domain) is required with an SMTP server")
	}
	if f.PasswordEnv != "" {
		m.Password = os.Getenv(f.PasswordEnv)
		if m.Password == "" {
			return m, fmt.Errorf("mail: $%s (mail.password_env) is empty", f.PasswordEnv)
		}
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return m, fmt.Errorf("mail.ca_file: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return m, fmt.Errorf("mail.ca_file %s: no certificate", f.CAFile)
		}
		m.TLS = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return m, nil
}
