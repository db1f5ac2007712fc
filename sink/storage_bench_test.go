package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// headMigrations is how many migrations the schema had before the analyst columns (0007 on): the "before" of
// BenchmarkSignalStorage.
const headMigrations = 6

// BenchmarkSignalStorage measures what one signal costs in ClickHouse before (migrations 0001-0006, the head's
// columns) and after (every migration: the analyst columns, lead_signals) the analyst schema: bytes on disk per
// signal (system.parts of the active parts after OPTIMIZE FINAL, for signals and for every table of the database,
// the materialized views' included), and insert CPU per row, this process's (the column appends and the native
// encoding) and the server's (UserTimeMicroseconds of the INSERTs in system.query_log, the views' work included).
// The same realistic rows (benchSignal: a Segment track event of about 1 KB with its context, a quarter linked)
// go in batches of 50,000 the way the sink appends them. Rows: BENCH_STORAGE_ROWS (default 200,000).
//
//	go test -run '^$' -bench SignalStorage -benchtime 1x -v ./sink/
func BenchmarkSignalStorage(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_STORAGE_ROWS")); err == nil && v > 0 {
		n = v
	}
	ch := testenv.NewClickHouse(b)
	ctx := context.Background()
	rows := make([]signalRow, n)
	for i := range rows {
		s := benchSignal(i)
		sum := sha256.Sum256([]byte(s.SignalID)) // a real signal id is SHA-256 hex: it does not compress like %064x
		s.SignalID = hex.EncodeToString(sum[:])
		v, err := schemas.Signals.Encode(&s)
		if err != nil {
			b.Fatal(err)
		}
		r := &kgo.Record{Topic: "signals.resolved", Key: schemas.RoutingKey(s.Tenant, s.AnonymousID), Value: v}
		if err := schemas.Signals.Decode(v, &s); err != nil {
			b.Fatal(err)
		}
		if rows[i], err = newSignalRow(&s, r); err != nil {
			b.Fatal(err)
		}
	}
	all, err := Migrations()
	if err != nil {
		b.Fatal(err)
	}
	headCols := signalColumns[:len(signalColumns)-18] // the 18 analyst columns of 0007 come last in signalRow
	b.ResetTimer()
	for it := range b.N {
		for _, v := range []struct {
			name string
			cols []string
		}{{"before", headCols}, {"after", signalColumns}} {
			db := fmt.Sprintf("%s_%s%d", ch.Database, v.name, it)
			if v.name == "before" {
				if err := ch.Conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
					b.Fatal(err)
				}
				for _, m := range all[:headMigrations] {
					for _, st := range m.Statements(db) {
						if err := ch.Conn.Exec(ctx, st); err != nil {
							b.Fatal(err)
						}
					}
				}
			} else if _, err := Migrate(ctx, ch.Conn, db); err != nil {
				b.Fatal(err)
			}
			prefix := fmt.Sprintf("bench-storage-%s-%d-%d-", v.name, it, time.Now().UnixNano())
			cpu, start := cpuTime(), time.Now()
			for from, batch := 0, 0; from < n; from, batch = from+50_000, batch+1 {
				qctx := clickhouse.Context(ctx, clickhouse.WithQueryID(prefix+strconv.Itoa(batch)),
					clickhouse.WithSettings(clickhouse.Settings{"log_queries": 1}))
				if err := insertNamed(qctx, ch.Conn, db, rows[from:min(from+50_000, n)], v.cols); err != nil {
					b.Fatal(err)
				}
			}
			wall, client := time.Since(start), cpuTime()-cpu
			server := serverCPU(b, ch.Conn, prefix)
			tables, total, signals := storage(b, ch.Conn, db)
			nf := float64(n)
			b.ReportMetric(float64(signals)/nf, v.name+"_signals_B/signal")
			b.ReportMetric(float64(total)/nf, v.name+"_all_tables_B/signal")
			b.ReportMetric(float64(client.Microseconds())/nf, v.name+"_client_cpu_µs/row")
			b.ReportMetric(float64(server.Microseconds())/nf, v.name+"_server_cpu_µs/row")
			b.Logf("%s: %d rows in %.2fs; bytes per signal by table: %s; largest columns of signals: %s", v.name, n,
				wall.Seconds(), tables, topColumns(b, ch.Conn, db, n))
			_ = ch.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
		}
	}
}

// insertNamed inserts rows into db.signals with the columns cols, appended column by column as the sink does.
func insertNamed(ctx context.Context, conn driver.Conn, db string, rows []signalRow, cols []string) error {
	batch, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.signals (%s)", db, strings.Join(cols, ", ")))
	if err != nil {
		return err
	}
	c := &signalCols{}
	for i := range rows {
		c.add(&rows[i])
	}
	byName := c.byName()
	for i, name := range cols {
		if err := batch.Column(i).Append(byName[name]); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	return batch.Send()
}

// serverCPU is the user CPU time the server spent on the queries whose id starts with prefix.
func serverCPU(b *testing.B, conn driver.Conn, prefix string) time.Duration {
	ctx := context.Background()
	if err := conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		b.Fatal(err)
	}
	var us uint64
	if err := conn.QueryRow(ctx, "SELECT sum(arraySum(arrayFilter((v, k) -> k = 'UserTimeMicroseconds', "+
		"ProfileEvents.Values, ProfileEvents.Names))) FROM system.query_log WHERE type = 2 AND startsWith(query_id, ?)",
		prefix).Scan(&us); err != nil {
		b.Fatal(err)
	}
	return time.Duration(us) * time.Microsecond
}

// storage merges every table of db and returns its bytes on disk per table (as text), the total and signals'.
func storage(b *testing.B, conn driver.Conn, db string) (string, uint64, uint64) {
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'", db)
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		names = append(names, name)
	}
	rows.Close()
	for _, t := range names {
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+db+"."+t+" FINAL"); err != nil {
			b.Fatal(err)
		}
	}
	rows, err = conn.Query(ctx, "SELECT table, sum(bytes_on_disk) FROM system.parts WHERE database = ? AND active "+
		"GROUP BY table ORDER BY table", db)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var parts []string
	var total, signals uint64
	for rows.Next() {
		var t string
		var bytes uint64
		if err := rows.Scan(&t, &bytes); err != nil {
			b.Fatal(err)
		}
		total += bytes
		if t == "signals" {
			signals = bytes
		}
		parts = append(parts, fmt.Sprintf("%s %d", t, bytes))
	}
	return strings.Join(parts, ", "), total, signals
}

// topColumns lists the columns of db.signals taking the most compressed bytes, per signal.
func topColumns(b *testing.B, conn driver.Conn, db string, n int) string {
	rows, err := conn.Query(context.Background(), "SELECT name, data_compressed_bytes FROM system.columns "+
		"WHERE database = ? AND table = 'signals'", db)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	type col struct {
		name  string
		bytes uint64
	}
	var cols []col
	for rows.Next() {
		var c col
		if err := rows.Scan(&c.name, &c.bytes); err != nil {
			b.Fatal(err)
		}
		cols = append(cols, c)
	}
	sort.Slice(cols, func(i, j int) bool { return cols[i].bytes > cols[j].bytes })
	var out []string
	for _, c := range cols[:min(8, len(cols))] {
		out = append(out, fmt.Sprintf("%s %.1f", c.name, float64(c.bytes)/float64(n)))
	}
	return strings.Join(out, ", ")
}
