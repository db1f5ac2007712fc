package sink

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

//go:embed migrations/*.sql
var migrationsFS embed.FS

// DatabasePlaceholder is replaced by the database name in every migration. Migrations name every table
// {database}.table so they run on a connection without a default database (the database may not exist yet).
const DatabasePlaceholder = "{database}"

// Migration is one versioned SQL file of sink/migrations: NNNN_name.sql, statements separated by ";" at a line end.
type Migration struct {
	Version  uint32
	Name     string
	SQL      string
	Checksum string
}

// ErrMigrationChanged means an applied migration's file differs from what was applied. Migrations are append-only:
// change the schema with a new file.
var ErrMigrationChanged = errors.New("applied migration was edited")

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationsFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.ParseUint(num, 10, 32)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		b, err := migrationsFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		out = append(out, Migration{Version: uint32(v), Name: e.Name(), SQL: string(b), Checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].Name, out[i].Name, out[i].Version)
		}
	}
	return out, nil
}

// Statements splits a migration into statements with the database substituted. Comment lines are dropped; a
// statement ends with ";" at the end of a line.
func (m Migration) Statements(database string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(m.SQL, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, finish(cur.String(), database))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, finish(s, database))
	}
	return out
}

func finish(stmt, database string) string {
	stmt = strings.TrimSuffix(strings.TrimSpace(stmt), ";")
	return strings.ReplaceAll(stmt, DatabasePlaceholder, database)
}

// Migrate creates database if needed and applies every embedded migration not yet recorded in
// database.schema_migrations, in order. Every statement is idempotent (IF NOT EXISTS), so a migration interrupted
// half way, or two sinks migrating at once, converge. It returns the migrations it applied.
func Migrate(ctx context.Context, conn driver.Conn, database string) ([]Migration, error) {
	if !databaseName.MatchString(database) {
		return nil, fmt.Errorf("%w: -clickhouse-database: %q is not a plain identifier", ErrConfig, database)
	}
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	for _, stmt := range []string{
		"CREATE DATABASE IF NOT EXISTS " + database,
		"CREATE TABLE IF NOT EXISTS " + database + ".schema_migrations (version UInt32, name String, checksum String, " +
			"applied_at DateTime('UTC') DEFAULT now()) ENGINE = ReplacingMergeTree() ORDER BY version",
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("preparing migrations table: %w", err)
		}
	}
	// Every checksum ever recorded for a version, so an edit is caught whether or not the rows were merged.
	applied := map[uint32][]string{}
	rows, err := conn.Query(ctx, "SELECT version, groupUniqArray(checksum) FROM "+database+".schema_migrations GROUP BY version")
	if err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		var sum []string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		applied[v] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	var done []Migration
	for _, m := range all {
		if sums, ok := applied[m.Version]; ok {
			for _, sum := range sums {
				if sum != m.Checksum {
					return done, fmt.Errorf("%w: %s", ErrMigrationChanged, m.Name)
				}
			}
			continue
		}
		for i, stmt := range m.Statements(database) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return done, fmt.Errorf("applying migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := record(ctx, conn, database, m); err != nil {
			return done, fmt.Errorf("recording migration %s: %w", m.Name, err)
		}
		done = append(done, m)
	}
	return done, nil
}

// record inserts m into schema_migrations through a native batch (an INSERT ... VALUES through Exec does not
// complete against 18.16).
func record(ctx context.Context, conn driver.Conn, database string, m Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+database+".schema_migrations (version, name, checksum)")
	if err != nil {
		return err
	}
	if err := b.Append(m.Version, m.Name, m.Checksum); err != nil {
		_ = b.Abort()
		return err
	}
	return b.Send()
}
