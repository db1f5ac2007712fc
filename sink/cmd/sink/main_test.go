package main

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestVerbs runs the binary's verbs in process against the real ClickHouse: migrate creates the schema (and is
// idempotent), query renders and runs a query file, redrive -dry-run lists dead letters, bad usage exits 2.
func TestVerbs(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	t.Setenv("SIGNALSTAGE_CLICKHOUSE_ADDR", ch.Addr)
	db := []string{"-clickhouse-database", ch.Database, "-log-level", "error"}
	for i := range 2 {
		if code := run(append([]string{"migrate"}, db...)); code != 0 {
			t.Fatalf("migrate run %d: exit %d", i+1, code)
		}
	}
	var n uint64
	if err := ch.Conn.QueryRow(context.Background(), "SELECT count() FROM schema_migrations FINAL").Scan(&n); err != nil || n == 0 {
		t.Fatalf("schema_migrations: %d rows, %v", n, err)
	}
	// A native batch: INSERT ... VALUES through Exec does not complete against 18.16.
	b, err := ch.Conn.PrepareBatch(context.Background(), "INSERT INTO signals (tenant, signal_id, version, event, event_time)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("acme", "s1", uint64(1), "Clicked", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	out := captureStdout(t, func() {
		if code := run(append(append([]string{"query"}, db...), "-param", "tenant=acme", "signal_queue")); code != 0 {
			t.Errorf("query: exit %d", code)
		}
	})
	if !strings.Contains(out, `"event":"Clicked"`) || !strings.Contains(out, `"signals_24h":1`) {
		t.Errorf("query output = %s", out)
	}
	// redrive -dry-run lists what it would send (a processor's dead letter of signals.raw) and skip (an event
	// the edge refused), and sends nothing (no broker is needed for that).
	dl, err := ch.Conn.PrepareBatch(context.Background(), "INSERT INTO dead_letters_v2 (tenant, stage, reason, origin_topic, origin_partition, origin_offset, failed_at)")
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Append("acme", "processor", "corrupt state value", "signals.raw", int32(1), int64(7), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := dl.Append("acme", "ingest", "missing type", "", int32(-1), int64(-1), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := dl.Send(); err != nil {
		t.Fatal(err)
	}
	out = captureStdout(t, func() {
		if code := run(append(append([]string{"redrive"}, db...), "-dry-run")); code != 0 {
			t.Errorf("redrive -dry-run: exit %d", code)
		}
	})
	if !strings.Contains(out, "send\tsignals.raw/1@7\tstage processor") || !strings.Contains(out, "skip (no origin topic") {
		t.Errorf("redrive -dry-run output = %s", out)
	}
	for _, args := range [][]string{
		{"frobnicate"},
		{"migrate", "-clickhouse-database", "bad.name"},
		{"-flush-rows", "x"},
		{"forget", "-email", "ann@acme.test"}, // no tenant
		{"forget", "-tenant", "acme"},         // no identifier
	} {
		if code := run(args); code != 2 {
			t.Errorf("run %q: exit %d, want 2", args, code)
		}
	}
}

func captureStdout(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	f()
	os.Stdout = old
	_ = w.Close()
	return <-done
}

// TestForgetVerb: `sink forget -wait 0` publishes one erasure record for the person to the compacted
// signals.erasures topic, keyed by the lower-cased email, and exits 0 (sink's TestForget applies one).
func TestForgetVerb(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	code := run([]string{"forget", "-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix,
		"-log-level", "error", "-tenant", "acme", "-email", "Ann@Acme.test", "-anonymous-id", "a1", "-wait", "0"})
	if code != 0 {
		t.Fatalf("forget: exit %d", code)
	}
	recs := k.ReadAll(k.Topic(schemas.TopicErasures), 1, 10*time.Second)
	if len(recs) != 1 {
		t.Fatalf("signals.erasures has %d records, want 1", len(recs))
	}
	var e schemas.Erasure
	if err := schemas.Erasures.Decode(recs[0].Value, &e); err != nil {
		t.Fatal(err)
	}
	if e.Tenant != "acme" || e.Email != "ann@acme.test" || e.AnonymousID != "a1" || e.RequestID == "" ||
		string(recs[0].Key) != "acme|email:ann@acme.test" {
		t.Errorf("erasure %+v key %q", e, recs[0].Key)
	}
}
