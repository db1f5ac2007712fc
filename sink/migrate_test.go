package sink_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// TestMigrate applies every migration on the real server, records them, applies nothing the second time, and
// refuses to run when an applied migration was edited.
func TestMigrate(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	ctx := context.Background()
	all, err := sink.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	applied, err := sink.Migrate(ctx, ch.Conn, ch.Database)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	if len(applied) != len(all) {
		t.Errorf("applied %d migrations, want %d", len(applied), len(all))
	}
	again, err := sink.Migrate(ctx, ch.Conn, ch.Database)
	if err != nil || len(again) != 0 {
		t.Errorf("second Migrate applied %d (err %v), want 0", len(again), err)
	}
	var n uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM schema_migrations FINAL").Scan(&n); err != nil || n != uint64(len(all)) {
		t.Errorf("schema_migrations FINAL has %d rows (err %v), want %d", n, err, len(all))
	}
	var tables []string
	rows, err := ch.Conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", ch.Database)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	for _, want := range []string{"signals", "identities", "dead_letters", "signal_volume_minute", "lead_fields", "leads", "signal_queue_minute", "schema_migrations"} {
		if !slices.Contains(tables, want) {
			t.Errorf("table %s missing; have %v", want, tables)
		}
	}

	b, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, checksum)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(all[0].Version, all[0].Name, "edited"); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Migrate(ctx, ch.Conn, ch.Database); !errors.Is(err, sink.ErrMigrationChanged) {
		t.Errorf("Migrate after an edit: %v, want ErrMigrationChanged", err)
	}
}

func TestMigrationStatements(t *testing.T) {
	m := sink.Migration{SQL: "-- a comment; with a semicolon\nCREATE TABLE {database}.a (x UInt8)\nENGINE = Memory;\n\n" +
		"CREATE VIEW {database}.b AS SELECT 1;\nSELECT 2"}
	got := m.Statements("db1")
	want := []string{"CREATE TABLE db1.a (x UInt8)\nENGINE = Memory", "CREATE VIEW db1.b AS SELECT 1", "SELECT 2"}
	if !slices.Equal(got, want) {
		t.Errorf("Statements = %q, want %q", got, want)
	}
	all, err := sink.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		for _, s := range m.Statements("x") {
			if strings.Contains(s, "{database}") || !strings.Contains(s, "x.") {
				t.Errorf("%s: statement not qualified with the database: %s", m.Name, s)
			}
		}
	}
}
