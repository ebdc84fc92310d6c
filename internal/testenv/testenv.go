// Package testenv gives tests real infrastructure, isolated per test: a
// fresh, migrated Postgres database on the test server, and an embedded
// NATS server that a test can stop and restart on the same port.
//
// The Postgres server is SLUICE_TEST_DATABASE_URL (an admin URL, any
// database); else postgres://127.0.0.1:5432/postgres as the current OS user
// (trust auth, as on the CI machine); else a private cluster started from
// the installed PostgreSQL binaries (see internal/devpg).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/internal/devpg"
	"github.com/sluicehq/sluice/migrations"
)

var (
	adminOnce sync.Once
	admin     string
	adminErr  error
)

// adminURL returns the URL of a Postgres server tests may create databases
// on: SLUICE_TEST_DATABASE_URL, else 127.0.0.1:5432, else a private cluster
// started from the installed binaries under the temp dir and left running
// for the next test binaries to reuse.
func adminURL() (string, error) {
	adminOnce.Do(func() {
		if u := os.Getenv("SLUICE_TEST_DATABASE_URL"); u != "" {
			admin = u
			return
		}
		local := "postgres://127.0.0.1:5432/postgres?sslmode=disable"
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, local); err == nil {
			conn.Close(ctx)
			admin = local
			return
		}
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-testpg-%d", os.Getuid()))
		c, err := devpg.Start(ctx, dir, nil)
		if err != nil {
			adminErr = fmt.Errorf("no postgres on 127.0.0.1:5432 and no private cluster: %w", err)
			return
		}
		admin = replaceDatabase(c.URL(), "postgres")
	})
	return admin, adminErr
}

// Postgres creates a fresh, migrated database and returns its URL. The
// database is a copy of a template migrated once per set of migrations
// (CREATE DATABASE … TEMPLATE), which is several times faster than
// migrating each test's database. It is dropped when the test ends.
func Postgres(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	aurl, err := adminURL()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tmpl, err := template(ctx, aurl)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	admin, err := pgx.Connect(ctx, aurl)
	if err != nil {
		t.Fatalf("testenv: connect to test postgres (set SLUICE_TEST_DATABASE_URL or start the server; see README): %v", err)
	}
	defer admin.Close(ctx)
	name := "sluice_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, aurl)
		if err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	return replaceDatabase(aurl, name)
}

var (
	tmplOnce sync.Once
	tmplName string
	tmplErr  error
)

// template returns the name of a database with every migration applied,
// made once per migration set and shared by every test binary: it is
// migrated under a name of its own and then renamed, so a test never sees
// a half-migrated template, and test binaries racing to make it agree on
// the result.
func template(ctx context.Context, aurl string) (string, error) {
	tmplOnce.Do(func() {
		tmplName, tmplErr = makeTemplate(ctx, aurl)
	})
	return tmplName, tmplErr
}

func makeTemplate(ctx context.Context, aurl string) (string, error) {
	sum, err := migrations.Checksum()
	if err != nil {
		return "", err
	}
	name := "sluice_tmpl_" + sum[:16]
	admin, err := pgx.Connect(ctx, aurl)
	if err != nil {
		return "", fmt.Errorf("connect to test postgres (set SLUICE_TEST_DATABASE_URL or start the server; see README): %w", err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for the template: %w", err)
	}
	if exists {
		return name, nil
	}
	work := "sluice_tmplwork_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+work); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	conn, err := pgx.Connect(ctx, replaceDatabase(aurl, work))
	if err != nil {
		return "", fmt.Errorf("connect to template: %w", err)
	}
	_, err = migrations.Migrate(ctx, conn)
	conn.Close(ctx)
	if err != nil {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+work+" WITH (FORCE)")
		return "", fmt.Errorf("migrate template: %w", err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+work+" RENAME TO "+name); err != nil {
		// Another test binary made it first.
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+work+" WITH (FORCE)")
		if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil || !exists {
			return "", fmt.Errorf("rename template: %w", err)
		}
	}
	return name, nil
}

// replaceDatabase swaps the database of a URL.
func replaceDatabase(url, db string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return url
	}
	host := cfg.Host
	if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
		host = "[" + host + "]"
	}
	auth := cfg.User
	if cfg.Password != "" {
		auth += ":" + cfg.Password
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", auth, host, cfg.Port, db)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Prefix returns a NATS subject prefix unique to the test.
func Prefix() string { return "t" + randomHex(5) }

// NATS is an embedded NATS server on a loopback port of its own.
type NATS struct {
	t    testing.TB
	port int
	srv  *natsserver.Server
}

// StartNATS starts a NATS server for the test; it is shut down when the
// test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := &NATS{t: t, port: port}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// URL returns the server's client URL.
func (n *NATS) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// Start starts the server (again) on its port.
func (n *NATS) Start() {
	n.t.Helper()
	var err error
	for i := 0; i < 50; i++ {
		n.srv, err = natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: n.port, NoSigs: true, NoLog: true, MaxPayload: 8 << 20})
		if err == nil {
			go n.srv.Start()
			if n.srv.ReadyForConnections(5 * time.Second) {
				return
			}
			n.srv.Shutdown()
		}
		time.Sleep(100 * time.Millisecond) // the port may linger after a stop
	}
	n.t.Fatalf("testenv: nats did not start on port %d: %v", n.port, err)
}

// Stop shuts the server down; clients see a disconnect and reconnect once
// Start runs again.
func (n *NATS) Stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}
