package sink_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// TestFlushTriggers: a table's batch goes at FlushRows rows, at FlushBytes bytes, or when its oldest row is
// FlushInterval old, and what is left goes at shutdown; offsets follow only what was inserted.
func TestFlushTriggers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rows     int
		bytes    int
		interval time.Duration
		produce  int
		landed   uint64 // rows in ClickHouse before shutdown
		reason   string
		flushes  float64
	}{
		{"rows", 100, 0, time.Hour, 250, 200, "rows", 2},
		{"bytes", 1_000_000, 30, time.Hour, 100, 90, "bytes", 3}, // bytes: in records' worth, 30 per batch
		{"age", 1_000_000, 0, 300 * time.Millisecond, 120, 120, "age", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			recs := make([]*kgo.Record, tc.produce)
			for i := range recs {
				sig := signal("acme", i)
				sig.RawOffset = 1<<20 + int64(i) // same varint length for every record
				recs[i] = e.signalRecord(sig)
				recs[i].Partition = 0
				if len(recs[i].Value) != len(recs[0].Value) || len(recs[i].Key) != len(recs[0].Key) {
					t.Fatal("records differ in size; the byte budget assumes equal ones")
				}
			}
			cfg := e.config()
			cfg.FlushRows, cfg.FlushBytes, cfg.FlushInterval = tc.rows, tc.bytes, tc.interval
			if tc.name == "bytes" {
				// The sink counts a record as its value and key plus 64 bytes of overhead.
				cfg.FlushBytes = tc.bytes * (len(recs[0].Value) + len(recs[0].Key) + 64)
			}
			reg := prometheus.NewRegistry()
			cfg.Registry = reg
			stop := e.start(cfg)
			cl := e.k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			e.waitCount(tc.landed, 30*time.Second, "SELECT count() FROM signals")
			e.waitCommitted(e.k.Topic(schemas.TopicResolved), int64(tc.landed), 30*time.Second)
			time.Sleep(300 * time.Millisecond) // nothing more may land before shutdown
			if got := e.count("SELECT count() FROM signals"); got != tc.landed {
				t.Fatalf("%d rows before shutdown, want %d", got, tc.landed)
			}
			// By age, a poll that splits the records in two makes two flushes; by rows and bytes the count is exact.
			if got := metric(t, reg, "signalstage_sink_flushes_total", "reason", tc.reason); got != tc.flushes &&
				(tc.reason != "age" || got < tc.flushes) {
				t.Errorf("flushes by %s = %v, want %v", tc.reason, got, tc.flushes)
			}
			stop()
			if got := e.count("SELECT count() FROM signals"); got != uint64(tc.produce) {
				t.Errorf("%d rows after shutdown, want %d", got, tc.produce)
			}
			if got := e.committed(e.k.Topic(schemas.TopicResolved)); got != int64(tc.produce) {
				t.Errorf("committed %d after shutdown, want %d", got, tc.produce)
			}
		})
	}
}
