package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/authz"
	adminv1 "github.com/sluicehq/sluice/gen/sluice/admin/v1"
	"github.com/sluicehq/sluice/gen/sluice/admin/v1/adminv1connect"
	authv1 "github.com/sluicehq/sluice/gen/sluice/auth/v1"
	colorv1 "github.com/sluicehq/sluice/gen/sluice/color/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
)

// configWithServices writes a config file: the cheap test users as the
// auth chain, a token service "billing", a certificate-only service
// "reporter", and extra YAML.
func configWithServices(t *testing.T, cfg *Config, extra string) (billingToken string) {
	t.Helper()
	token, hash, err := authz.NewServiceToken()
	if err != nil {
		t.Fatal(err)
	}
	users := cfg.UsersFile
	cfg.UsersFile = ""
	path := filepath.Join(t.TempDir(), "sluice.yml")
	y := fmt.Sprintf("auth:\n  chain:\n    - type: file\n      path: %s\nservices:\n  - name: billing\n    secret_hash: %q\n  - name: reporter\n%s", users, hash, extra)
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ConfigFile = path
	return token
}

// Server-only procedures refuse users and admit service principals, whose
// writes are attributed to them; revoking a user's sessions ends their
// streams.
func TestServicePrincipals(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	token := configWithServices(t, &cfg, "")
	app := startApp(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice := login(t, app.url, "alice")
	adminUser := login(t, app.url, "admin")
	billing := newClient(app.url)
	billing.token = token
	adminClient := func(c *client) adminv1connect.AdminServiceClient {
		return adminv1connect.NewAdminServiceClient(h2c(), app.url, connect.WithInterceptors(bearerInterceptor{token: &c.token}))
	}
	revoke := func(c *client, user string) (*connect.Response[adminv1.RevokeUserSessionsResponse], error) {
		return adminClient(c).RevokeUserSessions(ctx, connect.NewRequest(&adminv1.RevokeUserSessionsRequest{UserId: user}))
	}

	// Users, admins included, are refused; anonymous callers are
	// unauthenticated; a forged service token is not a service.
	for name, c := range map[string]*client{"user": alice, "admin user": adminUser} {
		if _, err := revoke(c, "bob"); codeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s calling a server-only procedure: %v, want permission_denied", name, err)
		}
	}
	if _, err := revoke(newClient(app.url), "bob"); codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("anonymous: %v", err)
	}
	forged := newClient(app.url)
	forged.token = "sks_" + token[len(token)-10:]
	if _, err := revoke(forged, "bob"); codeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("forged service token: %v", err)
	}
	// Input of services is still validated.
	if _, err := revoke(billing, ""); codeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("service with empty user id: %v", err)
	}

	// The service bypasses user checks; its writes carry its name.
	colors := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "global-color"}}})
	colors.untilSynced(t)
	if _, err := billing.color.SetColor(ctx, connect.NewRequest(&colorv1.SetColorRequest{Color: colorv1.Color_COLOR_BLUE})); err != nil {
		t.Fatalf("service set color: %v", err)
	}
	if by := colors.next(t, 10*time.Second).GetRecord().GetRecord().GetUpdatedBy(); by != "service:billing" {
		t.Fatalf("updated_by = %q, want the service", by)
	}

	// Revoking every session of alice ends her open stream and her token.
	second := login(t, app.url, "alice")
	res, err := revoke(billing, "alice")
	if err != nil || res.Msg.GetRevoked() != 2 {
		t.Fatalf("revoke alice: %v, %v; want 2 sessions", res, err)
	}
	if err := colors.end(t, 10*time.Second); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("alice's stream ended with %v, want unauthenticated", err)
	}
	for _, c := range []*client{alice, second} {
		if _, err := c.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); codeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("revoked session still works: %v", err)
		}
	}
	if _, err := adminUser.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); err != nil {
		t.Fatalf("other users' sessions must survive: %v", err)
	}
}

// pki is a throwaway CA with a server and client certificates.
type pki struct {
	dir    string
	caPool *x509.CertPool
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{dir: t.TempDir(), caPool: x509.NewCertPool(), caCert: cert, caKey: key}
	p.caPool.AddCert(cert)
	p.write(t, "ca.crt", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns a certificate for cn (a server one for 127.0.0.1 if server).
func (p *pki) issue(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	p.write(t, cn+".crt", "CERTIFICATE", der)
	p.write(t, cn+".key", "EC PRIVATE KEY", kder)
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// HTTPS with HTTP/2, users with tokens, and a service authenticated by its
// client certificate alone (mutual TLS).
func TestTLSAndMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	p.issue(t, "server", true)
	reporter := p.issue(t, "reporter", false)
	stranger := p.issue(t, "stranger", false)
	cfg := baseConfig(t)
	configWithServices(t, &cfg, "")
	cfg.TLSCert, cfg.TLSKey = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	cfg.TLSClientCA = filepath.Join(p.dir, "ca.crt")
	app := startApp(t, cfg)
	base := "https" + app.url[len("http"):]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tlsClient := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.caPool, Certificates: certs},
			ForceAttemptHTTP2: true,
		}}
	}
	// A user over HTTPS (HTTP/2) with a token.
	userClient := newClient(base)
	hc := tlsClient()
	userClient.auth = authv1connectClient(hc, base, &userClient.token)
	res, err := userClient.auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "alice-pass"}))
	if err != nil {
		t.Fatalf("login over TLS: %v", err)
	}
	userClient.token = res.Msg.GetToken()
	if _, err := userClient.auth.WhoAmI(ctx, connect.NewRequest(&authv1.WhoAmIRequest{})); err != nil {
		t.Fatalf("whoami over TLS: %v", err)
	}
	raw, err := hc.Get(base + "/grpc.health.v1.Health/Check")
	if err == nil {
		raw.Body.Close()
		if raw.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2", raw.Proto)
		}
	}

	revokeWith := func(hc *http.Client) error {
		c := adminv1connect.NewAdminServiceClient(hc, base)
		_, err := c.RevokeUserSessions(ctx, connect.NewRequest(&adminv1.RevokeUserSessionsRequest{UserId: "nobody"}))
		return err
	}
	if err := revokeWith(tlsClient(reporter)); err != nil {
		t.Fatalf("service by client certificate: %v", err)
	}
	if err := revokeWith(tlsClient(stranger)); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("unknown certificate name: %v, want unauthenticated", err)
	}
	if err := revokeWith(tlsClient()); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("no certificate: %v, want unauthenticated", err)
	}
	// Plain HTTP is not served on a TLS port.
	if _, err := newClient(app.url).auth.Login(ctx, connect.NewRequest(&authv1.LoginRequest{Username: "alice", Password: "alice-pass"})); err == nil {
		t.Fatal("plaintext request succeeded on the TLS port")
	}
}

// Browsers from a configured origin may call; others get no CORS grant.
func TestCORS(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(t)
	configWithServices(t, &cfg, "cors:\n  origins: [https://app.example.com]\n")
	app := startApp(t, cfg)
	preflight := func(origin string) http.Header {
		req, _ := http.NewRequest(http.MethodOptions, app.url+"/sluice.auth.v1.AuthService/Login", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		// Browsers send the list lowercase and sorted.
		req.Header.Set("Access-Control-Request-Headers", "authorization,connect-protocol-version,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.Header
	}
	if h := preflight("https://app.example.com"); h.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Fatalf("allowed origin: headers %v", h)
	}
	if h := preflight("https://evil.example.com"); h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin granted: %v", h)
	}
}

// A service revokes a user's sessions through instance A; the user's
// stream on instance B ends within the session check interval.
func TestRevokeSessionsAcrossInstances(t *testing.T) {
	t.Parallel()
	nats := testenvNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	token := configWithServices(t, &cfg, "")
	a := startApp(t, cfg)
	b := startApp(t, cfg)
	alice := login(t, b.url, "alice")
	s := alice.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	s.untilSynced(t)
	billing := newClient(a.url)
	billing.token = token
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := adminv1connect.NewAdminServiceClient(h2c(), a.url, connect.WithInterceptors(bearerInterceptor{token: &billing.token}))
	start := time.Now()
	if _, err := c.RevokeUserSessions(ctx, connect.NewRequest(&adminv1.RevokeUserSessionsRequest{UserId: "alice"})); err != nil {
		t.Fatal(err)
	}
	if err := s.end(t, 10*time.Second); codeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("stream on B ended with %v, want unauthenticated", err)
	}
	// SessionCheck is 200ms in tests (jittered up to twice that), and the
	// session's streams on B share a Live answer for cache_ttl (2s): the
	// bound is the sum, with room for a loaded machine.
	if d := time.Since(start); d > 6*time.Second {
		t.Fatalf("stream on B ended after %v", d)
	}
}
