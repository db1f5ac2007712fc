package sink_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

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
	steps := sink.Migration{SQL: "-- tolerate: 15, 44\nALTER TABLE {database}.a ADD COLUMN b UInt8;\n" +
		"-- requires: 20.1\nALTER TABLE {database}.a MODIFY COLUMN b UInt8 CODEC(ZSTD(1));\nSELECT 1;"}.Steps("db1")
	if len(steps) != 3 || !slices.Equal(steps[0].Tolerate, []int32{15, 44}) || steps[0].Requires != [2]uint64{} ||
		steps[1].Requires != [2]uint64{20, 1} || len(steps[1].Tolerate) != 0 || steps[2].Requires != [2]uint64{} {
		t.Errorf("Steps = %+v", steps)
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

// TestMigrateFromHead: a database at the schema this branch started from (migrations 0001-0006, with data) is
// migrated to the current one without losing a row: signals read the new columns as empty, dead letters are
// copied into dead_letters_v2 (and read through the dead_letters view), lead_signals is backfilled with the
// linked history, and the leads keep their fields.
func TestMigrateFromHead(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	ctx := context.Background()
	all, err := sink.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	const head = 6
	for _, m := range all[:head] {
		for _, stmt := range m.Statements(ch.Database) {
			if err := ch.Conn.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", m.Name, err)
			}
		}
	}
	// Migrate records what it applies; the head's are recorded here as an old sink did.
	if err := ch.Conn.Exec(ctx, "CREATE TABLE schema_migrations (version UInt32, name String, checksum String, "+
		"applied_at DateTime('UTC') DEFAULT now()) ENGINE = ReplacingMergeTree() ORDER BY version"); err != nil {
		t.Fatal(err)
	}
	b, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, checksum)")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all[:head] {
		if err := b.Append(m.Version, m.Name, m.Checksum); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"INSERT INTO signals (tenant, signal_id, version, status, email, anonymous_id, event_time, traits) SELECT 'acme', " +
			"toString(number), 1, if(number % 2 = 0, 'linked', 'cold'), if(number % 2 = 0, 'ann@acme.test', ''), 'a1', " +
			"toDateTime('2026-10-01 00:00:00', 'UTC') + number * 3600, '{\"name\":\"Ann\"}' FROM system.numbers LIMIT 100",
		"INSERT INTO dead_letters (tenant, stage, reason, retries, failed_at, kafka_topic, kafka_offset) SELECT 'acme', " +
			"'processor', 'bad', toInt32(number % 3), toDateTime('2026-10-01 00:00:00', 'UTC'), 'signals.dlq', number " +
			"FROM system.numbers LIMIT 10",
	} {
		if err := ch.Conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	applied, err := sink.Migrate(ctx, ch.Conn, ch.Database)
	if err != nil {
		t.Fatalf("Migrate from the head: %v", err)
	}
	if len(applied) != len(all)-head {
		t.Errorf("applied %d migrations, want %d", len(applied), len(all)-head)
	}
	count := func(q string) uint64 {
		t.Helper()
		var n uint64
		if err := ch.Conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	for q, want := range map[string]uint64{
		"SELECT count() FROM signals_latest":                                       100,
		"SELECT count() FROM signals_latest WHERE utm_source = '' AND ip = ''":     100,
		"SELECT count() FROM lead_signals FINAL WHERE email = 'ann@acme.test'":     50,
		"SELECT count() FROM dead_letters":                                         10,
		"SELECT count() FROM dead_letters WHERE retries = 2":                       3,
		"SELECT count() FROM leads WHERE email = 'ann@acme.test' AND name = 'Ann'": 1,
	} {
		if got := count(q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
	// Interrupted and run again: every step converges (the tolerated codes, the copy onto itself).
	if err := ch.Conn.Exec(ctx, "ALTER TABLE schema_migrations DELETE WHERE version > 6"); err != nil {
		t.Fatal(err)
	}
	waitMutations(t, ch)
	if _, err := sink.Migrate(ctx, ch.Conn, ch.Database); err != nil {
		t.Fatalf("Migrate again over applied statements: %v", err)
	}
	if got := count("SELECT count() FROM dead_letters"); got != 10 {
		t.Errorf("dead_letters after the re-run = %d, want 10", got)
	}
}

// waitMutations waits until ch's database has no mutation left to do.
func waitMutations(t *testing.T, ch *testenv.ClickHouse) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n uint64
		if err := ch.Conn.QueryRow(context.Background(), "SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0",
			ch.Database).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d mutations still running", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
