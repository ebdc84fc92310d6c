package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The mail section of the file wins over the flags where it says
// something, takes the password from the environment, and refuses what
// would leak it.
func TestMailConfigFromFile(t *testing.T) {
	fc, err := LoadConfigFile("../docs/sluice.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mailConfig(Config{}, fc.Mail); err == nil || !strings.Contains(err.Error(), "SLUICE_SMTP_PASSWORD") {
		t.Fatalf("mailConfig without the password = %v, want an error naming the variable", err)
	}
	t.Setenv("SLUICE_SMTP_PASSWORD", "s3cret")
	m, err := mailConfig(Config{SMTPAddr: "flag:25", MailDomain: "flag.example"}, fc.Mail)
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != "smtp.example.com:587" || m.Domain != "example.com" || m.Security != "starttls" || m.Username != "sluice" || m.Password != "s3cret" {
		t.Fatalf("mail config %+v", m)
	}
	m, err = mailConfig(Config{SMTPAddr: "relay:25", MailDomain: "example.org"}, MailFileConfig{})
	if err != nil || m.Addr != "relay:25" || m.Domain != "example.org" || m.Username != "" {
		t.Fatalf("flags only: %+v, %v", m, err)
	}
	for _, bad := range []string{
		"mail: {security: none, username: u, password_env: P}",
		"mail: {security: ssl}",
		"mail: {username: u}",
	} {
		if _, err := ParseConfig([]byte(bad), t.TempDir()); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	fcCA, err := ParseConfig([]byte("mail: {addr: 'x:587', domain: example.com, ca_file: ca.crt}"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mailConfig(Config{}, fcCA.Mail); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
}
