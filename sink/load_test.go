package sink_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
)

// TestRedeliveryAndRehydration: the same signal delivered twice, then re-emitted linked with a higher version,
// leaves one logical row with the latest version, and the queue counts it once.
func TestRedeliveryAndRehydration(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	cold := signal("acme", 1)
	other := signal("acme", 2)
	e.produce(e.signalRecord(cold), e.signalRecord(other), e.signalRecord(cold))
	e.waitCount(3, 30*time.Second, "SELECT count() FROM signals")

	linked := cold
	linked.Version, linked.Status, linked.Email = 2, schemas.StatusLinked, "ann@acme.test"
	linked.ProcessedAt = cold.ProcessedAt.Add(time.Hour)
	e.produce(e.signalRecord(linked), e.signalRecord(cold)) // a late re-delivery of v1 must not win
	e.waitCount(5, 30*time.Second, "SELECT count() FROM signals")

	if n := e.count("SELECT count() FROM signals FINAL"); n != 2 {
		t.Errorf("count() FINAL = %d, want 2", n)
	}
	if n := e.count("SELECT count() FROM signals FINAL WHERE signal_id = ? AND version = 2 AND status = 'linked' AND email = 'ann@acme.test'",
		cold.SignalID); n != 1 {
		t.Errorf("rehydrated row: %d rows with version 2, linked, email; want 1", n)
	}
	if n := e.count("SELECT uniqExactMerge(signals) FROM signal_volume_minute WHERE tenant = 'acme'"); n != 2 {
		t.Errorf("queue volume = %d, want 2", n)
	}
	if n := e.count("SELECT sum(signals) FROM signal_queue_minute WHERE tenant = 'acme'"); n != 2 {
		t.Errorf("signal_queue_minute = %d, want 2", n)
	}
	// After a merge the duplicates are gone for good, not only hidden by FINAL.
	if err := e.ch.Conn.Exec(context.Background(), "OPTIMIZE TABLE signals FINAL"); err != nil {
		t.Fatal(err)
	}
	if n := e.count("SELECT count() FROM signals"); n != 2 {
		t.Errorf("count() after OPTIMIZE FINAL = %d, want 2", n)
	}
}

// TestReplayLeavesCountsUnchanged: rewinding the group to the start (sink replay) and loading everything again
// changes neither count() FINAL nor the queue volume.
func TestReplayLeavesCountsUnchanged(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	stop := e.start(cfg)
	const n = 300
	recs := make([]*kgo.Record, 0, n)
	for i := range n {
		recs = append(recs, e.signalRecord(signal("acme", i)))
	}
	e.produce(recs...)
	e.waitCount(n, 30*time.Second, "SELECT count() FROM signals FINAL")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), n, 30*time.Second)
	stop()

	ctx := context.Background()
	if err := sink.Replay(ctx, cfg, time.Time{}); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if got := e.committed(e.k.Topic(schemas.TopicResolved)); got != 0 {
		t.Fatalf("after Replay committed offsets sum to %d, want 0", got)
	}
	e.start(cfg)
	e.waitCount(2*n, 30*time.Second, "SELECT count() FROM signals")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), n, 30*time.Second)
	if got := e.count("SELECT count() FROM signals FINAL"); got != n {
		t.Errorf("count() FINAL after replay = %d, want %d", got, n)
	}
	if got := e.count("SELECT uniqExactMerge(signals) FROM signal_volume_minute"); got != n {
		t.Errorf("queue volume after replay = %d, want %d", got, n)
	}
}

// TestClickHouseDownMidStream: while ClickHouse is unreachable the sink retries with backoff and pauses fetching;
// when it is back every record lands and the offsets reach the end.
func TestClickHouseDownMidStream(t *testing.T) {
	e := newEnv(t)
	px := newProxy(t, e.ch.Addr)
	cfg := e.config()
	cfg.ClickHouseAddr = px.addr()
	cfg.RetryMin, cfg.RetryMax = 50*time.Millisecond, 300*time.Millisecond
	cfg.InsertTimeout = 2 * time.Second
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	e.start(cfg)

	e.produce(e.signalRecords(0, 200)...)
	e.waitCount(200, 30*time.Second, "SELECT count() FROM signals FINAL")

	px.setDown(true)
	e.produce(e.signalRecords(200, 500)...)
	waitPaused(t, reg, 3, 30*time.Second)
	if got := e.committed(e.k.Topic(schemas.TopicResolved)); got > 200 {
		t.Errorf("committed %d while ClickHouse was down, want at most the 200 inserted", got)
	}
	e.produce(e.signalRecords(500, 600)...)
	px.setDown(false)

	e.waitCount(600, 60*time.Second, "SELECT count() FROM signals FINAL")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 600, 30*time.Second)
	if got := metric(t, reg, "signalstage_sink_fetch_paused"); got != 0 {
		t.Errorf("fetch_paused = %v after recovery, want 0", got)
	}
}

// TestPoisonRecords: undecodable bytes and an unconvertible signal go to dead_letters with reason and origin, and
// the records behind them on the same partition still load.
func TestPoisonRecords(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	topic := e.k.Topic(schemas.TopicResolved)
	bad := signal("acme", 2)
	bad.EventTime = time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC)
	recs := []*kgo.Record{
		{Topic: topic, Partition: 0, Key: []byte("acme|x"), Value: []byte("not avro at all")},
		e.signalRecord(signal("acme", 1)),
		e.signalRecord(bad),
		e.signalRecord(signal("acme", 3)),
	}
	cl := e.k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil { // all on partition 0, in order
		t.Fatal(err)
	}
	e.waitCount(2, 30*time.Second, "SELECT count() FROM signals FINAL")
	e.waitCount(2, 30*time.Second, "SELECT count() FROM dead_letters")
	e.waitCommitted(topic, 4, 30*time.Second)

	rows, err := e.ch.Conn.Query(context.Background(), `SELECT tenant, stage, reason, origin_topic, origin_partition,
		origin_offset, payload FROM dead_letters ORDER BY origin_offset`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	type dl struct {
		tenant, stage, reason, topic string
		partition                    int32
		offset                       int64
		payload                      string
	}
	var got []dl
	for rows.Next() {
		var d dl
		if err := rows.Scan(&d.tenant, &d.stage, &d.reason, &d.topic, &d.partition, &d.offset, &d.payload); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if len(got) != 2 {
		t.Fatalf("dead letters = %+v, want 2", got)
	}
	for i, want := range []struct {
		offset int64
		reason string
	}{{0, "single-object"}, {2, "event_time"}} {
		d := got[i]
		if d.tenant != "acme" || d.stage != "sink" || d.topic != topic || d.partition != 0 || d.offset != want.offset ||
			!strings.Contains(d.reason, want.reason) || d.payload != string(recs[want.offset].Value) {
			t.Errorf("dead letter %d = %+v, want offset %d and a reason naming %q", i, d, want.offset, want.reason)
		}
	}
}

// TestDeadLettersAndIdentities: records of signals.dlq and identities land in dead_letters and identities, with
// the latest link per id winning.
func TestDeadLettersAndIdentities(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	e.produce(
		e.deadLetterRecord(schemas.DeadLetter{Tenant: "acme", Stage: "processor", Reason: "bad json", Topic: "signals.raw",
			Partition: 4, Offset: 99, Key: []byte("acme|a1"), Payload: []byte("{"), Retries: 3, FailedAt: at}),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1", Email: "old@acme.test",
			AnonymousID: "a1", Traits: `{"name":"Old"}`, LinkedAt: at, SignalID: "s1"}),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1", Email: "ann@acme.test",
			AnonymousID: "a1", UserID: "u1", Traits: `{"name":"Ann","company":"Acme"}`, LinkedAt: at.Add(time.Minute), SignalID: "s2"}),
		// A tombstone of an id never linked: two deleted rows (one per kind), left out of identities_latest.
		&kgo.Record{Topic: e.k.Topic(schemas.TopicIdentities), Key: []byte("acme|gone")},
	)
	e.waitCount(1, 30*time.Second, "SELECT count() FROM dead_letters WHERE stage = 'processor' AND reason = 'bad json' "+
		"AND origin_topic = 'signals.raw' AND origin_partition = 4 AND origin_offset = 99 AND retries = 3 AND key = 'acme|a1'")
	e.waitCount(4, 30*time.Second, "SELECT count() FROM identities")
	if n := e.count("SELECT count() FROM identities_latest WHERE id = 'a1' AND email = 'ann@acme.test' AND user_id = 'u1'"); n != 1 {
		t.Errorf("latest identity rows = %d, want 1", n)
	}
	if n := e.count("SELECT count() FROM identities_latest"); n != 1 {
		t.Errorf("identities_latest = %d, want 1", n)
	}
	e.waitCommitted(e.k.Topic(schemas.TopicIdentities), 3, 30*time.Second)
}

// TestStopWhileClickHouseDown: stopping the sink while its inserts fail commits nothing it did not insert; a new
// sink, with ClickHouse back, loads every record once.
func TestStopWhileClickHouseDown(t *testing.T) {
	e := newEnv(t)
	px := newProxy(t, e.ch.Addr)
	cfg := e.config()
	cfg.ClickHouseAddr = px.addr()
	cfg.RetryMin, cfg.RetryMax, cfg.InsertTimeout = 50*time.Millisecond, 200*time.Millisecond, time.Second
	reg := prometheus.NewRegistry()
	cfg.Registry = reg
	stop := e.start(cfg)
	e.produce(e.signalRecord(signal("acme", 0)))
	e.waitCount(1, 30*time.Second, "SELECT count() FROM signals")
	// The row can be visible before the sink has read ClickHouse's acknowledgement; cutting the proxy in
	// between fails that insert (it is retried, and its offset rightly stays uncommitted). Wait for the commit.
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 1, 30*time.Second)

	px.setDown(true)
	var recs []*kgo.Record
	for i := 1; i < 100; i++ {
		recs = append(recs, e.signalRecord(signal("acme", i)))
	}
	e.produce(recs...)
	deadline := time.Now().Add(30 * time.Second)
	for metric(t, reg, "signalstage_sink_insert_errors_total") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("inserts never failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop() // returns once the final inserts give up
	if got := e.committed(e.k.Topic(schemas.TopicResolved)); got != 1 {
		t.Fatalf("committed %d, want only the 1 inserted record", got)
	}

	px.setDown(false)
	cfg.Registry = prometheus.NewRegistry()
	e.start(cfg)
	e.waitCount(100, 30*time.Second, "SELECT count() FROM signals FINAL")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 100, 30*time.Second)
}

// TestReplayFromTime: replay from a time rewinds each partition to its first record written at or after it.
func TestReplayFromTime(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	stop := e.start(cfg)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for i := range 20 {
		r := e.signalRecord(signal("acme", i))
		r.Partition, r.Timestamp = 0, t0.Add(time.Duration(i)*time.Minute)
		recs = append(recs, r)
	}
	cl := e.k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	topic := e.k.Topic(schemas.TopicResolved)
	e.waitCommitted(topic, 20, 30*time.Second)
	stop()
	if err := sink.Replay(context.Background(), cfg, t0.Add(15*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := e.committed(topic); got != 15 {
		t.Fatalf("after Replay from minute 15, committed = %d, want 15", got)
	}
	cfg.Registry = prometheus.NewRegistry()
	e.start(cfg)
	e.waitCount(25, 30*time.Second, "SELECT count() FROM signals") // 20 + the 5 replayed
	e.waitCommitted(topic, 20, 30*time.Second)
	if got := e.count("SELECT count() FROM signals FINAL"); got != 20 {
		t.Errorf("count() FINAL = %d, want 20", got)
	}
}

// TestBackfillSpanningManyMonths: one batch of signals whose event times span 250 months (a backfill of old
// history) reaches ClickHouse whole, as three INSERTs of at most 100 monthly partitions each: current ClickHouse
// refuses a block over max_partitions_per_insert_block (100 by default; sink/chdbcheck checks that on the engine),
// and the sink would retry such a block forever. ClickHouse 18.16 has no such limit, so here the count of INSERTs
// shows the split.
func TestBackfillSpanningManyMonths(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Registry = reg
	const months = 250
	cfg.FlushRows = months // one batch: flushed when the last row is in, not by age
	cfg.FlushInterval = time.Minute
	var recs []*kgo.Record
	for i := range months {
		s := signal("acme", i)
		s.EventTime = time.Date(2000, time.Month(1+i), 15, 12, 0, 0, 0, time.UTC)
		recs = append(recs, e.signalRecord(s))
	}
	e.produce(recs...)
	e.start(cfg)
	// Committed once the whole batch was acknowledged, so its metrics are final (rows are visible a moment
	// before the sink has read the last acknowledgement).
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), months, 60*time.Second)

	if n := e.count("SELECT count() FROM signals"); n != months {
		t.Errorf("signals: %d rows, want %d", n, months)
	}
	if n := e.count("SELECT uniqExact(toYYYYMM(event_time)) FROM signals"); n != months {
		t.Errorf("signals span %d months, want %d", n, months)
	}
	if n := e.count("SELECT uniqExactMerge(signals) FROM signal_volume_minute WHERE tenant = 'acme'"); n != months {
		t.Errorf("queue volume = %d, want %d", n, months)
	}
	if f := metric(t, reg, "signalstage_sink_flushes_total", "table", "signals"); f != 1 {
		t.Errorf("flushes_total{signals} = %v, want 1 batch", f)
	}
	if n := metric(t, reg, "signalstage_sink_inserts_total", "table", "signals"); n != 3 {
		t.Errorf("inserts_total{signals} = %v, want 3 (250 months, at most 100 per INSERT)", n)
	}
}

// startRefusing starts a sink (cfg edited by edit, when not nil) on a fresh env, waits until it has migrated and
// stored one signal, then makes ClickHouse itself refuse every signals row of event "Refused", as a value a
// column or check cannot take would: the insert of a block holding one fails whole (code 395, from throwIf).
func startRefusing(t *testing.T, edit func(*sink.Config)) (*env, sink.Config) {
	t.Helper()
	e := newEnv(t)
	cfg := e.config()
	if edit != nil {
		edit(&cfg)
	}
	e.start(cfg)
	e.produce(e.signalRecords(0, 1)...)
	e.waitCount(1, 60*time.Second, "SELECT count() FROM signals")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 1, 30*time.Second)
	if err := e.ch.Conn.Exec(context.Background(), "ALTER TABLE signals ADD COLUMN refused UInt8 MATERIALIZED throwIf(event = 'Refused')"); err != nil {
		t.Fatal(err)
	}
	return e, cfg
}

// refusedRecord is the record of signal i of acme with the event ClickHouse refuses after startRefusing.
func (e *env) refusedRecord(i int) *kgo.Record {
	s := signal("acme", i)
	s.Event = "Refused"
	return e.signalRecord(s)
}

// TestRefusedRowsGoToDeadLetters: rows ClickHouse refuses for their data are isolated by bisecting the batch and
// go to dead_letters with the refusal; the rest of the batch is stored and the offsets move on. Before, the
// sink retried the whole batch forever.
func TestRefusedRowsGoToDeadLetters(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, _ := startRefusing(t, func(c *sink.Config) { c.Registry = reg })
	const n = 200
	bad := map[int]bool{37: true, 150: true}
	var recs []*kgo.Record
	for i := 1; i <= n; i++ {
		if bad[i] {
			recs = append(recs, e.refusedRecord(i))
		} else {
			recs = append(recs, e.signalRecord(signal("acme", i)))
		}
	}
	e.produce(recs...)
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), n+1, 60*time.Second)

	if got := e.count("SELECT count() FROM signals"); got != n+1-uint64(len(bad)) {
		t.Errorf("signals: %d rows, want %d", got, n+1-len(bad))
	}
	if got := e.count("SELECT count() FROM signals WHERE event = 'Refused'"); got != 0 {
		t.Errorf("%d refused rows in signals", got)
	}
	rows, err := e.ch.Conn.Query(context.Background(),
		"SELECT stage, reason, origin_topic, origin_partition, origin_offset, key, payload FROM dead_letters ORDER BY reason")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var found int
	for rows.Next() {
		var stage, reason, topic, key, payload string
		var part int32
		var off int64
		if err := rows.Scan(&stage, &reason, &topic, &part, &off, &key, &payload); err != nil {
			t.Fatal(err)
		}
		found++
		var origin *kgo.Record
		for i, r := range recs {
			if bad[i+1] && r.Partition == part && r.Offset == off {
				origin = r
			}
		}
		switch {
		case origin == nil:
			t.Errorf("dead letter for %s/%d@%d, which is not a refused record", topic, part, off)
		case stage != "sink" || topic != e.k.Topic(schemas.TopicResolved):
			t.Errorf("dead letter stage %q topic %q, want sink and %s", stage, topic, e.k.Topic(schemas.TopicResolved))
		case !strings.Contains(reason, "395") || !strings.Contains(reason, "signal sig-"):
			t.Errorf("dead letter reason %q does not give ClickHouse's refusal and the signal", reason)
		case payload != string(origin.Value) || key != string(origin.Key):
			t.Errorf("dead letter key %q payload %q, want the record's key and value", key, payload)
		}
	}
	if found != len(bad) {
		t.Errorf("%d dead letters, want %d", found, len(bad))
	}
	if got := metric(t, reg, "signalstage_sink_refused_rows_total", "table", "signals", "outcome", "dead_lettered"); got != float64(len(bad)) {
		t.Errorf("refused_rows_total{signals,dead_lettered} = %v, want %d", got, len(bad))
	}
}

// TestTooManyRefusedRowsHoldTheBatch: when ClickHouse refuses more rows of a batch than -max-refused-rows, the
// cause is not a few bad rows; nothing is dead-lettered, the batch is retried with fetching paused and its offsets
// held, and it is stored whole once ClickHouse takes it again.
func TestTooManyRefusedRowsHoldTheBatch(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, _ := startRefusing(t, func(c *sink.Config) { c.Registry, c.MaxRefusedRows = reg, 2 })
	var recs []*kgo.Record
	for i := 1; i <= 40; i++ {
		if i%10 == 0 {
			recs = append(recs, e.refusedRecord(i))
		} else {
			recs = append(recs, e.signalRecord(signal("acme", i)))
		}
	}
	e.produce(recs...)
	waitPaused(t, reg, 5, 60*time.Second)
	if got := e.count("SELECT count() FROM dead_letters"); got != 0 {
		t.Errorf("%d dead letters while the batch is held, want 0", got)
	}
	if got := e.committed(e.k.Topic(schemas.TopicResolved)); got >= 41 {
		t.Errorf("committed %d while the batch is held, want less than 41", got)
	}

	if err := e.ch.Conn.Exec(context.Background(), "ALTER TABLE signals DROP COLUMN refused"); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 41, 60*time.Second)
	if got := e.count("SELECT count() FROM signals FINAL"); got != 41 {
		t.Errorf("signals FINAL: %d rows, want 41", got)
	}
	if got := e.count("SELECT count() FROM dead_letters"); got != 0 {
		t.Errorf("%d dead letters, want 0", got)
	}
}

// TestRedrive: dead letters go back to their origin topic and partition with their key and payload once the cause
// is fixed, and are marked so the default selection does not send them twice; an event the edge refused (no
// origin topic) is skipped.
func TestRedrive(t *testing.T) {
	e, cfg := startRefusing(t, nil)
	rec := e.refusedRecord(1)
	e.produce(rec)
	// A processor's dead letter of a signals.raw record, and one of the edge (an event it refused).
	raw := e.k.Topic(schemas.TopicRaw)
	e.produce(
		e.deadLetterRecord(schemas.DeadLetter{Tenant: "acme", Stage: "processor", Reason: "corrupt state value",
			Topic: raw, Partition: 2, Offset: 41, Key: []byte("acme|anon-9"), Payload: []byte("raw event bytes"),
			FailedAt: time.Now()}),
		e.deadLetterRecord(schemas.DeadLetter{Tenant: "acme", Stage: "ingest", Reason: "missing type",
			Partition: -1, Offset: -1, Key: []byte("acme|x"), Payload: []byte(`{"event":"x"}`), FailedAt: time.Now()}),
	)
	e.waitCount(3, 60*time.Second, "SELECT count() FROM dead_letters")
	if err := e.ch.Conn.Exec(context.Background(), "ALTER TABLE signals DROP COLUMN refused"); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	var seen []sink.Redriven
	res, err := sink.Redrive(ctx, cfg, sink.RedriveConfig{DryRun: true}, func(r sink.Redriven) { seen = append(seen, r) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2 || len(seen) != 3 || e.count("SELECT count() FROM signals WHERE event = 'Refused'") != 0 {
		t.Fatalf("dry run: sent %d of %d listed (%+v), want 2 of 3 and nothing sent", res.Sent, len(seen), seen)
	}
	res, err = sink.Redrive(ctx, cfg, sink.RedriveConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2 || len(res.Skipped) != 1 {
		t.Errorf("redrive: sent %d, skipped %v; want 2 sent and the edge's skipped", res.Sent, res.Skipped)
	}
	// The refused signal went back to signals.resolved, on its partition, and the sink stored it this time.
	e.waitCount(1, 60*time.Second, "SELECT count() FROM signals WHERE event = 'Refused' AND kafka_partition = ?", rec.Partition)
	// The processor's dead letter is on signals.raw, partition 2, as it was.
	got := e.k.ReadAll(raw, 1, 30*time.Second)
	if len(got) != 1 || got[0].Partition != 2 || string(got[0].Key) != "acme|anon-9" || string(got[0].Value) != "raw event bytes" {
		t.Fatalf("signals.raw after redrive: %v", got)
	}
	// Marked: retries 1, and a second run with the default selection sends nothing.
	if n := e.count("SELECT count() FROM dead_letters WHERE retries = 1"); n != 2 {
		t.Errorf("%d dead letters marked redriven, want 2", n)
	}
	res, err = sink.Redrive(ctx, cfg, sink.RedriveConfig{}, nil)
	if err != nil || res.Sent != 0 {
		t.Errorf("second redrive: sent %d (err %v), want 0", res.Sent, err)
	}
	if _, err := sink.Redrive(ctx, cfg, sink.RedriveConfig{Where: "no_such_column = 1"}, nil); err == nil ||
		!strings.Contains(err.Error(), "-where") {
		t.Errorf("a bad -where: err %v, want one naming -where", err)
	}
}

// TestRedriveOfARecordThatFailsAgain: a redriven record that fails again comes back as a new dead letter that
// carries its redrive count, so the default selection (retries = 0) does not send it round again.
func TestRedriveOfARecordThatFailsAgain(t *testing.T) {
	e, cfg := startRefusing(t, nil)
	e.produce(e.refusedRecord(1))
	e.waitCount(1, 60*time.Second, "SELECT count() FROM dead_letters")

	res, err := sink.Redrive(context.Background(), cfg, sink.RedriveConfig{}, nil)
	if err != nil || res.Sent != 1 {
		t.Fatalf("redrive: sent %d (err %v), want 1", res.Sent, err)
	}
	// Refused again: a second dead letter, of the redriven record, with retries 1.
	e.waitCount(2, 60*time.Second, "SELECT count() FROM dead_letters")
	if n := e.count("SELECT count() FROM dead_letters WHERE retries = 1"); n != 2 {
		t.Errorf("%d dead letters with retries 1, want 2 (the marked one and the new one)", n)
	}
	res, err = sink.Redrive(context.Background(), cfg, sink.RedriveConfig{}, nil)
	if err != nil || res.Sent != 0 {
		t.Errorf("second redrive: sent %d (err %v), want 0", res.Sent, err)
	}
}

// TestRedriveInChunks: more dead letters than one chunk are all sent, each once, and all marked.
func TestRedriveInChunks(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	if _, err := sink.Migrate(context.Background(), e.ch.Conn, e.ch.Database); err != nil {
		t.Fatal(err)
	}
	const n = 1234
	raw := e.k.Topic(schemas.TopicRaw)
	b, err := e.ch.Conn.PrepareBatch(context.Background(), "INSERT INTO dead_letters_v2 (tenant, stage, reason, origin_topic, origin_partition, origin_offset, key, payload, failed_at, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := b.Append("acme", "processor", "bug", raw, int32(i%3), int64(i), fmt.Sprint("k", i), fmt.Sprint("v", i),
			time.Now(), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	res, err := sink.Redrive(context.Background(), cfg, sink.RedriveConfig{}, nil)
	if err != nil || res.Sent != n {
		t.Fatalf("redrive: sent %d (err %v), want %d", res.Sent, err, n)
	}
	got := e.k.ReadAll(raw, n, 60*time.Second)
	seen := map[string]bool{}
	for _, r := range got {
		var i int
		if _, err := fmt.Sscanf(string(r.Key), "k%d", &i); err != nil || string(r.Value) != fmt.Sprint("v", i) || r.Partition != int32(i%3) {
			t.Fatalf("record %q=%q on partition %d", r.Key, r.Value, r.Partition)
		}
		seen[string(r.Key)] = true
	}
	if len(got) != n || len(seen) != n {
		t.Errorf("%d records on signals.raw, %d distinct, want %d", len(got), len(seen), n)
	}
	if m := e.count("SELECT count() FROM dead_letters WHERE retries = 1"); m != n {
		t.Errorf("%d dead letters marked, want %d", m, n)
	}
}

// TestRefusalsInARowHoldTheSink: when ClickHouse refuses row after row (one-row batches here, as at low traffic)
// and takes none, only -max-refused-rows of them are dead-lettered; the next ones wait, fetching paused, until
// ClickHouse takes them again.
func TestRefusalsInARowHoldTheSink(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, _ := startRefusing(t, func(c *sink.Config) { c.Registry, c.MaxRefusedRows, c.FlushRows = reg, 2, 1 })
	for i := 1; i <= 5; i++ {
		e.produce(e.refusedRecord(i))
	}
	waitPaused(t, reg, 3, 60*time.Second)
	if n := e.count("SELECT count() FROM dead_letters"); n != 2 {
		t.Errorf("%d dead letters while ClickHouse refuses every row, want 2 (-max-refused-rows)", n)
	}
	if err := e.ch.Conn.Exec(context.Background(), "ALTER TABLE signals DROP COLUMN refused"); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 6, 60*time.Second)
	if n := e.count("SELECT count() FROM signals WHERE event = 'Refused'"); n != 3 {
		t.Errorf("%d refused rows stored once ClickHouse took them, want 3", n)
	}
	if n := e.count("SELECT count() FROM dead_letters"); n != 2 {
		t.Errorf("%d dead letters, want 2", n)
	}
}
