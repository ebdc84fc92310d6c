package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/devpg"
)

// refusingPostgres listens on a free loopback port and answers every
// startup message the way a Postgres server refusing the login does: an
// ErrorResponse with SQLSTATE 28P01. It returns the server's URL.
func refusingPostgres(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go refuseLogin(conn)
		}
	}()
	return "postgres://" + ln.Addr().String() + "/sluice?sslmode=disable"
}

// refuseLogin reads a startup message (declining SSL and GSS encryption
// requests first) and answers with a fatal authentication error.
func refuseLogin(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		var n uint32
		if err := binary.Read(conn, binary.BigEndian, &n); err != nil || n < 8 || n > 10000 {
			return
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(conn, body); err != nil {
			return
		}
		code := binary.BigEndian.Uint32(body)
		if code == 80877103 || code == 80877104 { // SSLRequest, GSSENCRequest
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
			continue
		}
		break
	}
	var fields bytes.Buffer
	for _, f := range []struct {
		typ byte
		val string
	}{{'S', "FATAL"}, {'V', "FATAL"}, {'C', "28P01"}, {'M', `password authentication failed for user "sluice"`}} {
		fields.WriteByte(f.typ)
		fields.WriteString(f.val)
		fields.WriteByte(0)
	}
	fields.WriteByte(0)
	msg := []byte{'E'}
	msg = binary.BigEndian.AppendUint32(msg, uint32(fields.Len()+4))
	_, _ = conn.Write(append(msg, fields.Bytes()...))
}

// openWithoutDatabaseURL opens an App without DATABASE_URL, probing local
// instead of localhost:5432, with its private cluster under a fresh dir.
func openWithoutDatabaseURL(t *testing.T, local string) (*App, string, error) {
	t.Helper()
	cfg := baseConfig(t)
	cfg.DatabaseURL = ""
	cfg.localDatabase = local
	// The server runs as an unprivileged user when tests run as root: the
	// temp dirs above the data dir must be searchable.
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg.DataDir = filepath.Join(tmp, "data")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	app, err := Open(ctx, cfg)
	return app, cfg.DataDir, err
}

// A server on the local port that answers but refuses the login is an
// error that says so; sluiced does not quietly start an empty private
// database instead.
func TestLocalPostgresRefusingLoginIsAnError(t *testing.T) {
	t.Parallel()
	for name, local := range map[string]string{
		"password refused": refusingPostgres(t),
		// The machine's test server, as a role it does not know.
		"unknown role": "postgres://no_such_role_sluice@127.0.0.1:5432/sluice?sslmode=disable",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "unknown role" {
				if c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second); err != nil {
					t.Skip("no postgres on 127.0.0.1:5432")
				} else {
					c.Close()
				}
			}
			app, dataDir, err := openWithoutDatabaseURL(t, local)
			if err == nil {
				app.Shutdown(context.Background())
				t.Fatal("Open fell back although the local server answered")
			}
			if !strings.Contains(err.Error(), "refused the login") || !strings.Contains(err.Error(), "DATABASE_URL") {
				t.Fatalf("unclear error: %v", err)
			}
			if _, statErr := os.Stat(filepath.Join(dataDir, "pg")); !errors.Is(statErr, os.ErrNotExist) {
				t.Fatalf("a private cluster was created anyway: %v", statErr)
			}
			t.Log(err)
		})
	}
}

// When nothing answers on the local port, sluiced starts (and, as its only
// user, stops) a private cluster.
func TestNoLocalPostgresStartsPrivateCluster(t *testing.T) {
	t.Parallel()
	if _, err := devpg.FindBinDir(); err != nil {
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "postgres://" + ln.Addr().String() + "/sluice?sslmode=disable"
	ln.Close()
	app, dataDir, err := openWithoutDatabaseURL(t, closed)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if app.cluster == nil {
		t.Fatal("no private cluster started")
	}
	if _, err := os.Stat(filepath.Join(dataDir, "pg", "PG_VERSION")); err != nil {
		t.Fatalf("private cluster not under the data dir: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := app.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
