// Package migrations holds the numbered SQL migrations of the Sluice schema
// and applies them with tern (github.com/jackc/tern/v2).
//
// tern was chosen because it runs on pgx itself (no database/sql layer next
// to the pgx pool), takes a Postgres advisory lock so several sluiced
// instances can start at once, and keeps migrations as plain numbered SQL
// files with an optional down section.
package migrations

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// versionTable records the applied schema version.
const versionTable = "sluice_schema_version"

// Migrate applies every migration not yet applied to the database conn is
// connected to. It is safe to call from several processes at once.
func Migrate(ctx context.Context, conn *pgx.Conn) (int32, error) {
	m, err := migrate.NewMigrator(ctx, conn, versionTable)
	if err != nil {
		return 0, fmt.Errorf("new migrator: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return 0, fmt.Errorf("load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	v, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("schema version: %w", err)
	}
	return v, nil
}

// Checksum returns a hex SHA-256 of every migration file, names and
// contents: two databases migrated by sets with the same checksum have the
// same schema.
func Checksum() (string, error) {
	names, err := fs.Glob(files, "*.sql")
	if err != nil {
		return "", err
	}
	slices.Sort(names)
	h := sha256.New()
	for _, n := range names {
		b, err := files.ReadFile(n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
