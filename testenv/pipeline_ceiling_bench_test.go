package testenv

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ceiling is one raw-client measurement on the pipeline's own records: wall time and CPU-seconds of this process
// (the client) and of the server it talks to.
type ceiling struct {
	name        string
	n           int
	wall        time.Duration
	client, srv float64
	serverName  string
}

// measureCeilings runs, on the same private services right after the runs, what the pipeline cannot beat:
// franz-go producing the records ingest wrote to signals.raw (same keys, values and headers, lz4 as ingest),
// a transactional consume-and-produce of those records (the processor's Kafka work without its logic: read
// committed, one transaction per poll, each record produced again with the offsets committed in the
// transaction), and clickhouse-go inserting rows of the pipeline's signals table into a copy of it (no views).
func (p *benchPipe) measureCeilings() []ceiling {
	b := p.b
	ctx := context.Background()
	n := *pipeEvents
	raw := p.prefix + "signals.raw"
	recs := p.readRecords(ctx, raw, n)
	cl := p.kafka.Client()
	adm := kadm.NewClient(cl)
	src, dst := p.prefix+"ceiling.in", p.prefix+"ceiling.out"
	if _, err := adm.CreateTopics(ctx, 6, 1, nil, src, dst); err != nil {
		b.Fatalf("creating the ceiling topics: %v", err)
	}
	jvm := p.kafka.PID()
	var out []ceiling

	prod := p.kafka.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	c := p.window("franz-go produce", len(recs), jvm, "kafka", func() {
		for _, r := range recs {
			r.Topic = src
			prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					b.Errorf("producing: %v", err)
				}
			})
		}
		if err := prod.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	})
	out = append(out, c)

	sess, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(p.kafka.Brokers()...), kgo.TransactionalID("bench-ceiling"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumerGroup("bench-ceiling"), kgo.ConsumeTopics(src),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.RequireStableFetchOffsets(),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	c = p.window("franz-go transactional consume+produce", len(recs), jvm, "kafka", func() {
		got := 0
		for got < len(recs) {
			fs := sess.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				b.Fatalf("polling: %v", err)
			}
			if err := sess.Begin(); err != nil {
				b.Fatal(err)
			}
			e := kgo.AbortingFirstErrPromise(sess.Client())
			fs.EachRecord(func(r *kgo.Record) {
				got++
				sess.Produce(ctx, &kgo.Record{Topic: dst, Key: r.Key, Value: r.Value, Headers: r.Headers}, e.Promise())
			})
			committed, err := sess.End(ctx, e.Err() == nil)
			if err != nil || !committed {
				b.Fatalf("ending a transaction: committed %v, %v (%v)", committed, err, e.Err())
			}
		}
	})
	out = append(out, c)
	return append(out, p.insertCeiling(ctx))
}

// window runs f and measures it.
func (p *benchPipe) window(name string, n, serverPID int, serverName string, f func()) ceiling {
	self := os.Getpid()
	c0, s0 := procCPU(p.b, self), procCPU(p.b, serverPID)
	t0 := time.Now()
	f()
	return ceiling{name: name, n: n, wall: time.Since(t0), client: procCPU(p.b, self) - c0,
		srv: procCPU(p.b, serverPID) - s0, serverName: serverName}
}

// readRecords reads the first n records of topic (outside any window).
func (p *benchPipe) readRecords(ctx context.Context, topic string, n int) []*kgo.Record {
	cl := p.kafka.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out := make([]*kgo.Record, 0, n)
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			p.b.Fatalf("reading %s: %v (%d records)", topic, err, len(out))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(out) < n {
				out = append(out, &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers})
			}
		})
	}
	return out
}

// insertCeiling inserts -pipeline.ceiling-rows rows of the signals table into a copy of it, in blocks of 50,000
// (the sink's default flush), with PrepareBatch and Append; only the inserts are measured.
func (p *benchPipe) insertCeiling(ctx context.Context) ceiling {
	b := p.b
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{p.ch.Addr}, Auth: clickhouse.Auth{Database: p.database},
		DialTimeout: 5 * time.Second, Settings: clickhouse.Settings{"allow_experimental_low_cardinality_type": 1}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE TABLE ceiling_signals AS signals"); err != nil {
		b.Fatalf("creating the copy: %v", err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT * FROM signals LIMIT %d", *pipeCeilRows))
	if err != nil {
		b.Fatal(err)
	}
	cols := rows.Columns()
	types := rows.ColumnTypes()
	var all [][]any
	for rows.Next() {
		ptrs := make([]any, len(cols))
		for i, t := range types {
			ptrs[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			b.Fatalf("scanning: %v", err)
		}
		vals := make([]any, len(cols))
		for i, ptr := range ptrs {
			vals[i] = reflect.ValueOf(ptr).Elem().Interface()
		}
		all = append(all, vals)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	rows.Close()
	insert := "INSERT INTO ceiling_signals (" + strings.Join(cols, ", ") + ")"
	var c ceiling
	for start := 0; start < len(all); start += 50_000 {
		block := all[start:min(len(all), start+50_000)]
		w := p.window("", len(block), p.ch.PID(), "clickhouse", func() {
			batch, err := conn.PrepareBatch(ctx, insert)
			if err != nil {
				b.Fatal(err)
			}
			for _, row := range block {
				if err := batch.Append(row...); err != nil {
					b.Fatalf("appending: %v", err)
				}
			}
			if err := batch.Send(); err != nil {
				b.Fatalf("inserting: %v", err)
			}
		})
		c.n += w.n
		c.wall += w.wall
		c.client += w.client
		c.srv += w.srv
	}
	c.name, c.serverName = "clickhouse-go insert (signals rows, no views)", "clickhouse"
	return c
}

// benchOut collects what the benchmark prints at the end (after the services' own start-up logs).
type benchOut struct{ lines []string }

func newBenchOut() *benchOut { return &benchOut{} }

func (o *benchOut) add(format string, args ...any) {
	o.lines = append(o.lines, fmt.Sprintf(format, args...))
}

func (o *benchOut) run(run int, r runResult) {
	if run == 1 {
		o.add("%-4s %9s %9s %8s | %s | %s", "run", "events", "e2e ev/s", "wall", cpuHeader(), "processor RSS/peak, clickhouse RSS")
	}
	var cells []string
	for _, name := range measured {
		cells = append(cells, fmt.Sprintf("%9.2f", r.cpu[name]*1e6/float64(r.events)))
	}
	o.add("%-4d %9d %9.0f %7.1fs | %s | %d/%d MiB, %d MiB", run, r.events, float64(r.events)/r.wall.Seconds(),
		r.wall.Seconds(), strings.Join(cells, " "), r.rss["processor"]>>20, r.hwm["processor"]>>20, r.rss["clickhouse"]>>20)
	var secs []string
	for _, name := range measured {
		secs = append(secs, fmt.Sprintf("%s %.1f", name, r.cpu[name]))
	}
	o.add("     CPU-seconds: %s (raw records incl. re-sent: %d)", strings.Join(secs, ", "), r.raw)
}

// topics prints the Kafka offsets per event so far (records and transaction markers), per topic.
func (o *benchOut) topics(ends map[string]int64, events int) {
	names := make([]string, 0, len(ends))
	for n := range ends {
		names = append(names, n)
	}
	slices.Sort(names)
	var cells []string
	var total int64
	for _, n := range names {
		total += ends[n]
		cells = append(cells, fmt.Sprintf("%s %.2f", n, float64(ends[n])/float64(events)))
	}
	o.add("     Kafka offsets per event so far: %.2f (%s)", float64(total)/float64(events), strings.Join(cells, ", "))
}

func cpuHeader() string {
	var h []string
	for _, name := range measured {
		h = append(h, fmt.Sprintf("%9s", name))
	}
	return "CPU µs/event: " + strings.Join(h, " ")
}

func (o *benchOut) ceilings(cs []ceiling) {
	o.add("raw ceilings, same records, same services:")
	for _, c := range cs {
		o.add("  %-46s %8d in %6.1fs = %8.0f/s; CPU µs each: client %.2f, %s %.2f", c.name, c.n, c.wall.Seconds(),
			float64(c.n)/c.wall.Seconds(), c.client*1e6/float64(c.n), c.serverName, c.srv*1e6/float64(c.n))
	}
}

func (o *benchOut) flush(b testing.TB) {
	fmt.Println("\nBenchmarkPipeline: " + time.Now().UTC().Format(time.RFC3339) + ", load average " + loadAvg())
	for _, l := range o.lines {
		fmt.Println(l)
	}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
