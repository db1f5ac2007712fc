package sink

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// benchClientRows is the batch of the client-side benchmarks: the sink's -flush-rows default.
const benchClientRows = 50_000

// benchRecords returns n records of signals.resolved as the sink fetches them (benchSignal, encoded).
func benchRecords(b *testing.B, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range n {
		s := benchSignal(i)
		v, err := schemas.Signals.Encode(&s)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: "signals.resolved", Partition: int32(i % 6), Offset: int64(i / 6),
			Key: schemas.RoutingKey(s.Tenant, s.AnonymousID), Value: v, Timestamp: s.ProcessedAt}
	}
	return recs
}

// BenchmarkSignalDecode is the sink's CPU per record between the fetch and the batch: Avro decoding and the
// conversion into the table's row (what Sink.add does for signals.resolved), without Kafka. One op is one record.
//
//	go test -run '^$' -bench SignalDecode -benchmem ./sink/
func BenchmarkSignalDecode(b *testing.B) {
	recs := benchRecords(b, benchClientRows)
	t := newSignalsTable("db")
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		addSignalRecord(b, t, recs[i%len(recs)], now)
		if t.len() == benchClientRows {
			t.take()
		}
	}
}

// BenchmarkSignalAppend is the client side of one insert of signals: PrepareBatch and the column appends of a
// batch of 50,000 rows (the native encoding happens in Send, which BenchmarkSinkVsRaw measures with the server's
// work); the batch is aborted instead of sent. One op is one batch; ns/row is the figure. Needs ClickHouse (testenv).
//
//	go test -run '^$' -bench SignalAppend -benchmem ./sink/
func BenchmarkSignalAppend(b *testing.B) {
	ch := testenv.NewClickHouse(b)
	ctx := context.Background()
	if _, err := Migrate(ctx, ch.Conn, ch.Database); err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(b, benchClientRows)
	t := newSignalsTable(ch.Database)
	for _, r := range recs {
		addSignalRecord(b, t, r, time.Now())
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		batch, err := ch.Conn.PrepareBatch(ctx, t.query)
		if err != nil {
			b.Fatal(err)
		}
		if err := t.columnar(batch, t.rows); err != nil {
			b.Fatal(err)
		}
		if err := batch.Abort(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N*benchClientRows), "ns/row")
}

// addSignalRecord decodes a signals.resolved record and adds its row to t, as the sink's loop does.
func addSignalRecord(b *testing.B, t *table[signalRow], r *kgo.Record, now time.Time) {
	var v schemas.Signal
	if err := schemas.Signals.Decode(r.Value, &v); err != nil {
		b.Fatal(err)
	}
	row, err := newSignalRow(&v, r)
	if err != nil {
		b.Fatal(err)
	}
	t.add(row, tp{r.Topic, r.Partition}, r.Offset, len(r.Value), now)
}
