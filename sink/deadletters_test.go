package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
)

// TestRefusedRowRedeliveredFolds: the dead letter of a row ClickHouse refuses takes failed_at from the record (not
// the sink's clock) and the record's value with the Signal v2 fields; refused again after a replay, it is the same
// row in the same partition and folds: one row after OPTIMIZE FINAL, not a permanent duplicate per delivery.
func TestRefusedRowRedeliveredFolds(t *testing.T) {
	e, cfg := startRefusing(t, nil)
	s := signal("acme", 5)
	s.Event, s.EmailDomain, s.GroupID, s.EventContext = "Refused", "acme.test", "g-1", contextFields()
	rec := e.signalRecord(s)
	// A record written long ago, in another month than the run: the wall clock would put the copies apart.
	rec.Timestamp = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	e.produce(rec)
	e.waitCount(1, 60*time.Second, "SELECT count() FROM dead_letters")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 2, 30*time.Second)
	e.stopAll()
	if err := sink.Replay(context.Background(), cfg, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 2, 60*time.Second)
	e.waitCount(2, 60*time.Second, "SELECT count() FROM dead_letters_v2") // delivered twice, refused twice
	if err := e.ch.Conn.Exec(context.Background(), "OPTIMIZE TABLE dead_letters_v2 FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := e.count("SELECT count() FROM dead_letters_v2"); n != 1 {
		t.Errorf("dead_letters_v2 has %d rows after OPTIMIZE FINAL, want 1 (no duplicate per delivery)", n)
	}
	var failed time.Time
	var payload string
	if err := e.ch.Conn.QueryRow(context.Background(), "SELECT failed_at, payload FROM dead_letters").Scan(&failed, &payload); err != nil {
		t.Fatal(err)
	}
	if !failed.Equal(rec.Timestamp) {
		t.Errorf("failed_at = %v, want the record's timestamp %v", failed, rec.Timestamp)
	}
	var got schemas.Signal
	if err := schemas.Signals.Decode([]byte(payload), &got); err != nil {
		t.Fatal(err)
	}
	if got.EventContext != s.EventContext || got.EmailDomain != "acme.test" || got.GroupID != "g-1" {
		t.Errorf("dead letter payload lost the v2 fields: %+v", got)
	}
}

// TestRedriveMarkSurvivesReplay: dead_letters is versioned by the retry count, so after a redrive (which writes
// retries 1) a replay of signals.dlq that writes the row again with retries 0 does not make the default redrive
// select it again.
func TestRedriveMarkSurvivesReplay(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	e.start(cfg)
	e.produce(e.deadLetterRecord(schemas.DeadLetter{Tenant: "acme", Stage: "processor", Reason: "bad json",
		Topic: e.k.Topic(schemas.TopicRaw), Partition: 1, Offset: 7, Key: []byte("acme|a1"), Payload: []byte("{"),
		FailedAt: time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)}))
	e.waitCount(1, 60*time.Second, "SELECT count() FROM dead_letters")
	ctx := context.Background()
	if res, err := sink.Redrive(ctx, cfg, sink.RedriveConfig{}, nil); err != nil || res.Sent != 1 {
		t.Fatalf("Redrive sent %d (err %v), want 1", res.Sent, err)
	}
	e.waitCommitted(e.k.Topic(schemas.TopicDLQ), 1, 30*time.Second)
	e.stopAll()
	if err := sink.Replay(ctx, cfg, time.Time{}); err != nil {
		t.Fatal(err)
	}
	e.start(cfg)
	e.waitCount(2, 60*time.Second, "SELECT count() FROM dead_letters_v2") // the mark and the replayed row
	e.waitCommitted(e.k.Topic(schemas.TopicDLQ), 1, 30*time.Second)
	if err := e.ch.Conn.Exec(ctx, "OPTIMIZE TABLE dead_letters_v2 FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := e.count("SELECT count() FROM dead_letters_v2 WHERE retries = 1"); n != 1 {
		t.Errorf("after the replay and a merge: %d rows with retries 1, want 1", n)
	}
	if res, err := sink.Redrive(ctx, cfg, sink.RedriveConfig{DryRun: true}, nil); err != nil || res.Sent != 0 {
		t.Errorf("default redrive after the replay would send %d (err %v), want 0", res.Sent, err)
	}
}

// TestRefusedDeadLetterIsHeld: a dead_letters row ClickHouse refuses is never dropped while its offset moves on:
// the sink retries it with the offset of signals.dlq held, and stores it once ClickHouse takes it.
func TestRefusedDeadLetterIsHeld(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Registry = reg
	e.start(cfg)
	ok := schemas.DeadLetter{Tenant: "acme", Stage: "processor", Reason: "fine", Topic: e.k.Topic(schemas.TopicRaw),
		Offset: 1, FailedAt: time.Date(2026, 11, 30, 1, 0, 0, 0, time.UTC)}
	e.produce(e.deadLetterRecord(ok))
	e.waitCommitted(e.k.Topic(schemas.TopicDLQ), 1, 60*time.Second)
	ctx := context.Background()
	if err := e.ch.Conn.Exec(ctx, "ALTER TABLE dead_letters_v2 ADD COLUMN refused UInt8 MATERIALIZED throwIf(reason = 'refused')"); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.Reason, bad.Offset = "refused", 2
	e.produce(e.deadLetterRecord(bad))
	deadline := time.Now().Add(60 * time.Second)
	for metric(t, reg, "signalstage_sink_refused_rows_total", "table", "dead_letters_v2", "outcome", "held") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refused dead_letters row was not held")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second) // several flush intervals: the offset must stay
	if got := e.committed(e.k.Topic(schemas.TopicDLQ)); got != 1 {
		t.Fatalf("committed signals.dlq offsets = %d while its row is refused, want 1", got)
	}
	if err := e.ch.Conn.Exec(ctx, "ALTER TABLE dead_letters_v2 DROP COLUMN refused"); err != nil {
		t.Fatal(err)
	}
	e.waitCount(1, 60*time.Second, "SELECT count() FROM dead_letters WHERE reason = 'refused'")
	e.waitCommitted(e.k.Topic(schemas.TopicDLQ), 2, 60*time.Second)
}
