package sink

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// BenchmarkSinkVsRaw measures rows/s through the whole sink (Kafka fetch, Avro decode, batching, insert, offset
// commit) against a raw clickhouse-go insert of the same rows (already decoded, in memory, PrepareBatch + column
// appends + Send in batches of FlushRows, the way the sink appends) into an identical fresh database, in the same
// run; raw_appendstruct is the same with AppendStruct per row, for reference. The sink's
// clock starts when it has fetched its first record (so the consumer-group join is not counted) and stops when
// count() reaches the row count. Rows: BENCH_SINK_ROWS (default 200,000).
//
//	go test -run '^$' -bench SinkVsRaw -benchtime 1x ./sink/
func BenchmarkSinkVsRaw(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_SINK_ROWS")); err == nil && v > 0 {
		n = v
	}
	k := testenv.NewKafka(b, 6)
	ch := testenv.NewClickHouse(b)
	ctx := context.Background()

	// Produce once; the raw side inserts exactly the rows the sink makes of these records.
	recs := benchRecords(b, n)
	for _, r := range recs {
		// produced: the key picks the partition, the broker the offset, the client the timestamp
		r.Topic, r.Partition, r.Offset, r.Timestamp = k.Topic(schemas.TopicResolved), 0, 0, time.Time{}
	}
	rows := make([]signalRow, n)
	if err := k.Client(kgo.ProducerLinger(5*time.Millisecond)).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	for i, r := range recs {
		var s schemas.Signal
		if err := schemas.Signals.Decode(r.Value, &s); err != nil {
			b.Fatal(err)
		}
		row, err := newSignalRow(&s, r)
		if err != nil {
			b.Fatal(err)
		}
		rows[i] = row
	}
	cfg := Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: ch.Addr,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	if v, err := strconv.Atoi(os.Getenv("BENCH_SINK_FLUSH_BYTES")); err == nil {
		cfg.FlushBytes = v
	}
	cfg = cfg.withDefaults()

	b.ResetTimer()
	var rawTotal, structTotal, sinkTotal, rawCPU, sinkCPU time.Duration
	var ratios []float64 // per iteration: sink and raw ran back to back, so load drift on this shared machine cancels
	for i := range b.N {
		rawBefore, sinkBefore := rawTotal, sinkTotal
		cfg.Database = fmt.Sprintf("%s_sink%d", ch.Database, i)
		cfg.Registry = prometheus.NewRegistry()
		if err := Replay(ctx, cfg, time.Time{}); err != nil {
			b.Fatal(err)
		}
		rawDB, structDB := fmt.Sprintf("%s_raw%d", ch.Database, i), fmt.Sprintf("%s_struct%d", ch.Database, i)
		runs := []func(){
			func() {
				cpu := cpuTime()
				sinkTotal += benchSink(b, ch.Conn, cfg, n)
				sinkCPU += cpuTime() - cpu
			},
			func() {
				cpu := cpuTime()
				took := benchRaw(b, ch.Conn, rawDB, rows, cfg.FlushRows, true)
				rawCPU += cpuTime() - cpu
				rawTotal += took
				b.Logf("raw columnar: %.2fs", took.Seconds())
			},
			func() {
				took := benchRaw(b, ch.Conn, structDB, rows, cfg.FlushRows, false)
				structTotal += took
				b.Logf("raw AppendStruct: %.2fs", took.Seconds())
			},
		}
		// Rotate the order: whoever runs later shares the server with the earlier runs' background merges.
		for k := range runs {
			runs[(i+k)%len(runs)]()
		}
		ratios = append(ratios, 100*(rawTotal-rawBefore).Seconds()/(sinkTotal-sinkBefore).Seconds())
		for _, db := range []string{rawDB, structDB, cfg.Database} {
			_ = ch.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		}
	}
	rows64 := float64(n * b.N)
	raw, strct, snk := rows64/rawTotal.Seconds(), rows64/structTotal.Seconds(), rows64/sinkTotal.Seconds()
	b.ReportMetric(raw, "raw_rows/s")
	b.ReportMetric(strct, "raw_appendstruct_rows/s")
	b.ReportMetric(snk, "sink_rows/s")
	b.ReportMetric(100*snk/raw, "sink_%_of_raw")
	// Process CPU (user + system) per row: what this process spent, whatever else the machine was doing. The
	// sink's includes Kafka fetching, Avro decoding, batching and its idle polling; the server's work is in neither.
	b.ReportMetric(float64(sinkCPU.Microseconds())/rows64, "sink_cpu_µs/row")
	b.ReportMetric(float64(rawCPU.Microseconds())/rows64, "raw_cpu_µs/row")
	slices.Sort(ratios)
	b.ReportMetric(ratios[len(ratios)/2], "median_sink_%_of_raw")
	b.Logf("sink %% of raw per iteration: %.0f", ratios)
}

// benchRaw inserts rows in batches of batch rows into a fresh database db with the sink's migrations, column by
// column like the sink (columnar) or with AppendStruct per row.
func benchRaw(b *testing.B, conn driver.Conn, db string, rows []signalRow, batch int, columnar bool) time.Duration {
	ctx := context.Background()
	if _, err := Migrate(ctx, conn, db); err != nil {
		b.Fatal(err)
	}
	t := newTable[signalRow](db, "signals")
	if columnar {
		t.columnar = appendSignalColumns
	}
	start := time.Now()
	for from := 0; from < len(rows); from += batch {
		t.rows = rows[from:min(from+batch, len(rows))]
		if err := t.insert(ctx, conn); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

func benchSink(b *testing.B, conn driver.Conn, cfg Config, n int) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	mconn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{cfg.ClickHouseAddr}})
	if err != nil {
		b.Fatal(err)
	}
	defer mconn.Close()
	// So Run's own migration is a no-op and the clock times loading only.
	if cfg.ClickHouseCluster != "" {
		_, err = MigrateClusterConfig(ctx, cfg)
	} else {
		_, err = Migrate(ctx, mconn, cfg.Database)
	}
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	reg := cfg.Registry.(*prometheus.Registry)
	var start time.Time
	deadline := time.Now().Add(5 * time.Minute)
	for start.IsZero() {
		if gatherSum(reg, "signalstage_sink_records_total") > 0 {
			start = time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatal("sink fetched nothing")
		}
		time.Sleep(time.Millisecond)
	}
	for {
		var c uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".signals").Scan(&c); err != nil {
			b.Fatal(err)
		}
		if c >= uint64(n) {
			took := time.Since(start)
			mfs, _ := reg.Gather()
			for _, mf := range mfs {
				switch mf.GetName() {
				case "signalstage_sink_flushes_total":
					for _, m := range mf.GetMetric() {
						b.Logf("flushes %v: %v", m.GetLabel(), m.GetCounter().GetValue())
					}
				case "signalstage_sink_insert_seconds":
					for _, m := range mf.GetMetric() {
						b.Logf("inserts: %d taking %.2fs of %.2fs", m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), took.Seconds())
					}
				}
			}
			return took
		}
		if time.Now().After(deadline) {
			b.Fatalf("sink loaded %d of %d rows", c, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func gatherSum(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// benchSignal is a realistic resolved Segment track or page signal of about 1 KB with its payload.
func benchSignal(i int) schemas.Signal {
	at := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	anon := fmt.Sprintf("anon-%08d", i%20000)
	events := []string{"Product Viewed", "Pricing Viewed", "Signed Up", "Form Submitted", "Docs Searched"}
	s := schemas.Signal{
		Tenant: fmt.Sprintf("tenant-%d", i%5), SignalID: fmt.Sprintf("%064x", i), Version: 1, Status: schemas.StatusCold,
		Source: schemas.SourceSegment, Type: "track", Event: events[i%len(events)], MessageID: fmt.Sprintf("ajs-%d", i),
		AnonymousID: anon, URL: fmt.Sprintf("https://example.test/products/%d", i%300), PageName: "Product",
		Properties: fmt.Sprintf(`{"product_id":"p-%d","price":%d.99,"currency":"USD","category":"tools"}`, i%300, i%100),
		Traits:     "{}", EventTime: at, ReceivedAt: at.Add(40 * time.Millisecond), ProcessedAt: at.Add(90 * time.Millisecond),
		RawPartition: int32(i % 6), RawOffset: int64(i / 6),
		// The contract's derived fields of the payload below (Signal v2), as the processor carries them.
		EventContext: schemas.EventContext{PagePath: "/products", Referrer: "https://www.google.com/",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)", IP: "203.0.113.7",
			Locale: "en-US", LibraryName: "analytics.js", LibraryVersion: "4.1.0"},
	}
	if i%3 == 0 { // a third arrive from a campaign
		s.UTMSource, s.UTMMedium, s.UTMCampaign = []string{"google", "newsletter", "linkedin"}[i%9/3], "cpc", fmt.Sprintf("c-%d", i%7)
	}
	if i%4 == 0 {
		s.Status, s.Email, s.UserID = schemas.StatusLinked, fmt.Sprintf("user%d@example.test", i%20000), fmt.Sprintf("u-%d", i%20000)
		s.EmailDomain = "example.test"
		s.RuleID, s.MappedName, s.Mapped = "r-1", "Engaged", map[string]string{"company": "Example", "title": "Engineer"}
	}
	s.Payload = fmt.Appendf(nil, `{"type":"track","event":%q,"anonymousId":%q,"messageId":"ajs-%d","timestamp":%q,`+
		`"properties":%s,"context":{"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":%q,"path":"/products",`+
		`"referrer":"https://www.google.com/"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",`+
		`"ip":"203.0.113.7","locale":"en-US"},"sentAt":%q}`,
		s.Event, anon, i, at.Format(time.RFC3339Nano), s.Properties, s.URL, at.Format(time.RFC3339Nano))
	return s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
