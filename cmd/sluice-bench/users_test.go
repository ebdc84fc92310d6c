package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluicehq/sluice/services/auth"
)

// The users file must load in sluiced and its passwords must verify, or
// every bench run with -user-pattern fails at login.
func TestWriteUsersFileLoadsInServer(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "users.yml")
	if err := writeUsersFile(path, 3, "bench%d", "bench%d-pass"); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatalf("sluiced rejects the users file: %v", err)
	}
	if users.Len() != 3 {
		t.Fatalf("users: %d, want 3", users.Len())
	}
	creds, err := writerCreds(3, "bench%d", "bench%d-pass")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range creds {
		if _, ok := users.Verify(c.username, c.password); !ok {
			t.Errorf("login %s/%s fails against the written file", c.username, c.password)
		}
	}
	if _, ok := users.Verify("bench1", "bench2-pass"); ok {
		t.Error("bench1 accepts bench2's password")
	}
}

func TestWriterCreds(t *testing.T) {
	t.Parallel()
	dev, err := writerCreds(4, "", "")
	if err != nil || len(dev) != 4 || dev[0].username != "userA" || dev[3].password != "admin-pass" {
		t.Fatalf("writerCreds(4, dev) = %v, %v", dev, err)
	}
	if _, err := writerCreds(5, "", ""); err == nil {
		t.Error("5 writers from the 4 development users: want an error")
	}
	for _, bad := range []string{"bench", "bench%d%d", "bench%s", "%d%%"} {
		if _, err := writerCreds(1, bad, "p%d"); err == nil {
			t.Errorf("user pattern %q: want an error", bad)
		}
	}
	if err := writeUsersFile(filepath.Join(os.TempDir(), "never-written.yml"), 0, "b%d", "p%d"); err == nil {
		t.Error("-n 0: want an error")
	}
}
