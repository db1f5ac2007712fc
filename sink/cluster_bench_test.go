package sink

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// BenchmarkClusterSink measures rows/s through one sink into the local 2x2 ClickHouse cluster (each block split
// by shard, inserted with insert_quorum=2 into the shard's replicated table) and, in the same run from the same
// topics, into the single local server, so the cost of the cluster path is read off one sitting. The rows are
// benchSignal's (five tenants). Rows: BENCH_SINK_ROWS (default 100,000). Needs SIGNALSTAGE_CLUSTER=1.
//
//	SIGNALSTAGE_CLUSTER=1 go test -run '^$' -bench ClusterSink -benchtime 1x ./sink/
func BenchmarkClusterSink(b *testing.B) {
	c := testenv.NewClickHouseCluster(b)
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_SINK_ROWS")); err == nil && v > 0 {
		n = v
	}
	k := testenv.NewKafka(b, 6)
	ch := testenv.NewClickHouse(b)
	ctx := context.Background()
	recs := benchRecords(b, n)
	for _, r := range recs {
		// produced: the key picks the partition, the broker the offset, the client the timestamp
		r.Topic, r.Partition, r.Offset, r.Timestamp = k.Topic(schemas.TopicResolved), 0, 0, time.Time{}
	}
	if err := k.Client(kgo.ProducerLinger(5*time.Millisecond)).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	var shards [][]string
	for s := 1; s <= 2; s++ {
		var rs []string
		for _, node := range c.Nodes {
			if node.Shard == s {
				rs = append(rs, node.Addr)
			}
		}
		shards = append(shards, rs)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.ResetTimer()
	var clusterTotal, singleTotal time.Duration
	for i := range b.N {
		cl := Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: c.Nodes[0].Addr, Database: c.Database,
			ClickHouseCluster: c.Cluster, ClickHouseShards: shards, Registry: prometheus.NewRegistry(), Logger: log}
		cl = cl.withDefaults()
		if i > 0 {
			cl.Database = fmt.Sprintf("%s_%d", c.Database, i)
		}
		if err := Replay(ctx, cl, time.Time{}); err != nil {
			b.Fatal(err)
		}
		took := benchSink(b, c.Nodes[0].Conn, cl, n)
		clusterTotal += took
		b.Logf("cluster: %d rows in %.2fs", n, took.Seconds())
		if i > 0 {
			_ = c.Nodes[0].Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+cl.Database+" ON CLUSTER "+c.Cluster)
		}

		one := Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: ch.Addr, Logger: log,
			Database: fmt.Sprintf("%s_one%d", ch.Database, i), Registry: prometheus.NewRegistry()}
		one = one.withDefaults()
		if err := Replay(ctx, one, time.Time{}); err != nil {
			b.Fatal(err)
		}
		took = benchSink(b, ch.Conn, one, n)
		singleTotal += took
		b.Logf("single node: %d rows in %.2fs", n, took.Seconds())
		_ = ch.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+one.Database)
	}
	rows := float64(n * b.N)
	b.ReportMetric(rows/clusterTotal.Seconds(), "cluster_rows/s")
	b.ReportMetric(rows/singleTotal.Seconds(), "single_rows/s")
}
