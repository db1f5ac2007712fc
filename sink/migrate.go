package sink

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
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

// Statements splits a migration into statements with the database substituted (see Steps).
func (m Migration) Statements(database string) []string {
	steps := m.Steps(database)
	out := make([]string, len(steps))
	for i, st := range steps {
		out[i] = st.SQL
	}
	return out
}

// Step is one statement of a migration and the ClickHouse error codes that mean it was already applied.
type Step struct {
	SQL string
	// Tolerate lists exception codes Migrate takes as success: written "-- tolerate: 15, 44" on the line before the
	// statement, for what 18.16 cannot say idempotently (it has no ADD COLUMN IF NOT EXISTS: a re-run after an
	// interrupted migration gets "column already exists", code 44 there and 15 on current releases).
	Tolerate []int32
	// Requires is the oldest server release (major, minor) the statement runs on, written "-- requires: 20.1" on
	// the line before it; Migrate skips it on an older server (18.16 has no CODEC, for one). {0, 0}: every release.
	Requires [2]uint64
}

// Steps splits a migration into statements with the database substituted. Comment lines are dropped, except a
// "-- tolerate:" or "-- requires:" line, which applies to the statement that follows; a statement ends with ";" at
// a line end.
func (m Migration) Steps(database string) []Step {
	var out []Step
	var cur strings.Builder
	var tolerate []int32
	var requires [2]uint64
	for _, line := range strings.Split(m.SQL, "\n") {
		t := strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(t, "-- requires:"); ok {
			major, minor, _ := strings.Cut(strings.TrimSpace(v), ".")
			requires[0], _ = strconv.ParseUint(major, 10, 32)
			requires[1], _ = strconv.ParseUint(minor, 10, 32)
			continue
		}
		if codes, ok := strings.CutPrefix(t, "-- tolerate:"); ok {
			for _, c := range strings.Split(codes, ",") {
				if n, err := strconv.ParseInt(strings.TrimSpace(c), 10, 32); err == nil {
					tolerate = append(tolerate, int32(n))
				}
			}
			continue
		}
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			out = append(out, Step{SQL: finish(cur.String(), database), Tolerate: tolerate, Requires: requires})
			cur.Reset()
			tolerate, requires = nil, [2]uint64{}
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, Step{SQL: finish(s, database), Tolerate: tolerate, Requires: requires})
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
	return migrate(ctx, conn, database, func(m Migration) []Step { return m.Steps(database) }, math.MaxUint32)
}

// migrate is Migrate with the statements of each migration given by steps (a cluster node's differ), applying
// the versions up to upTo only.
func migrate(ctx context.Context, conn driver.Conn, database string, steps func(Migration) []Step, upTo uint32) ([]Migration, error) {
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
	dctx, server, err := ddlContext(ctx, conn)
	if err != nil {
		return nil, err
	}
	var done []Migration
	for _, m := range all {
		if m.Version > upTo {
			break
		}
		if sums, ok := applied[m.Version]; ok {
			for _, sum := range sums {
				if sum != m.Checksum {
					return done, fmt.Errorf("%w: %s", ErrMigrationChanged, m.Name)
				}
			}
			continue
		}
		for i, st := range steps(m) {
			if !server.atLeast(st.Requires) {
				continue
			}
			if err := conn.Exec(dctx, st.SQL); err != nil && !tolerated(err, st.Tolerate) {
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

// release is a server's (major, minor) version.
type release [2]uint64

func (r release) atLeast(want [2]uint64) bool {
	return r[0] > want[0] || (r[0] == want[0] && r[1] >= want[1])
}

// ddlContext is ctx with the settings the migrations need on this server, and the server's release. LowCardinality
// columns are experimental on ClickHouse 18.x and need allow_experimental_low_cardinality_type=1 there; current
// releases do not know the setting any more and refuse it.
func ddlContext(ctx context.Context, conn driver.Conn) (context.Context, release, error) {
	v, err := conn.ServerVersion()
	if err != nil {
		return nil, release{}, fmt.Errorf("reading the server version: %w", err)
	}
	r := release{v.Version.Major, v.Version.Minor}
	if r[0] < 19 {
		return clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
			"allow_experimental_low_cardinality_type": 1})), r, nil
	}
	return ctx, r, nil
}

// tolerated reports whether err is a ClickHouse exception with one of codes.
func tolerated(err error, codes []int32) bool {
	var ex *clickhouse.Exception
	return errors.As(err, &ex) && slices.Contains(codes, ex.Code)
}
