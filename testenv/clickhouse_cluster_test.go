package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// TestClusterClickHouseReplication checks, on the local 2x2 cluster, what the sink will rely on:
//   - tables created ON CLUSTER reach every node; a Distributed table shards rows by cityHash64(key);
//   - a later version of a key goes to the same shard, so FINAL through the Distributed table keeps the highest;
//   - a synchronous insert through it puts each row on the shard its hash names, on both replicas of it, and a
//     query through the Distributed table from any node sees every row exactly once;
//   - an identical block inserted again is dropped by the replicated engine, on the same replica, on the other
//     replica of the shard, and through the Distributed table;
//   - a replica SIGKILLed while inserts go on catches up after its restart;
//   - a quorum insert (insert_quorum=2) with one replica down fails, and its retry once the replica is back
//     succeeds without writing the block twice;
//   - with ZooKeeper stopped replicated inserts fail, and they resume once it is back.
func TestClusterClickHouseReplication(t *testing.T) {
	c := NewClickHouseCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s1r1, s1r2, s2r1, s2r2 := c.Node("s1r1"), c.Node("s1r2"), c.Node("s2r1"), c.Node("s2r2")
	db := c.Database
	c.Exec(ctx, s1r1, fmt.Sprintf(`CREATE TABLE %[1]s.events_local ON CLUSTER %[2]s
		(key String, version UInt64, payload String)
		ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/%[1]s/events_local', '{replica}', version)
		ORDER BY key`, db, c.Cluster))
	c.Exec(ctx, s1r1, fmt.Sprintf(`CREATE TABLE %[1]s.events ON CLUSTER %[2]s AS %[1]s.events_local
		ENGINE = Distributed(%[2]s, %[1]s, events_local, cityHash64(key))`, db, c.Cluster))
	syncInsert := map[string]any{"insert_distributed_sync": 1} // see SessionConn: not per query on 18.16

	var want uint64
	insertKeys(ctx, t, s1r1.SessionConn(syncInsert), "events", clusterKeys("a", 0, 1000))
	want += 1000
	var perShard [2]uint64
	for i, shard := range [][2]*ClickHouseNode{{s1r1, s1r2}, {s2r1, s2r2}} {
		syncReplicaOn(ctx, t, shard[1], "events_local")
		n1, n2 := nodeCount(ctx, t, shard[0], "events_local"), nodeCount(ctx, t, shard[1], "events_local")
		if n1 != n2 || n1 == 0 {
			t.Fatalf("shard %d: %s has %d rows, %s has %d: want the same, non-zero", i+1, shard[0].Name, n1, shard[1].Name, n2)
		}
		var misplaced uint64
		queryNode(ctx, t, shard[1], fmt.Sprintf("SELECT count() FROM events_local WHERE cityHash64(key) %% 2 != %d", i), &misplaced)
		if misplaced != 0 {
			t.Fatalf("shard %d holds %d rows whose hash names the other shard", i+1, misplaced)
		}
		perShard[i] = n1
	}
	if perShard[0]+perShard[1] != want {
		t.Fatalf("shards hold %d + %d rows, want %d", perShard[0], perShard[1], want)
	}
	t.Logf("1000 rows through the Distributed table: shard 1 %d, shard 2 %d, on both replicas each", perShard[0], perShard[1])
	requireDistributedRows(ctx, t, c, want)

	// Retried identical blocks: deduplicated by the replicated engine.
	block := clusterKeys("dup", 0, 100)
	insertKeys(ctx, t, s2r1.Conn, "events_local", block)
	before := nodeCount(ctx, t, s2r1, "events_local")
	insertKeys(ctx, t, s2r1.Conn, "events_local", block)
	insertKeys(ctx, t, s2r2.Conn, "events_local", block)
	syncReplicaOn(ctx, t, s2r1, "events_local")
	if after := nodeCount(ctx, t, s2r1, "events_local"); after != before {
		t.Fatalf("the same block again (same replica, then the other one): %d rows, want %d", after, before)
	}
	want += 100
	dist := clusterKeys("dist", 0, 300)
	insertKeys(ctx, t, s2r2.SessionConn(syncInsert), "events", dist)
	insertKeys(ctx, t, s1r2.SessionConn(syncInsert), "events", dist)
	want += 300
	requireDistributedRows(ctx, t, c, want)

	// A replica SIGKILLed while inserts go on catches up after its restart.
	s1r2.Kill()
	viaS2r1 := s2r1.SessionConn(syncInsert)
	for i := range 5 {
		insertKeys(ctx, t, viaS2r1, "events", clusterKeys(fmt.Sprintf("down%d-", i), 0, 100))
		want += 100
	}
	restart := stopwatch(s1r2.Start)
	caughtUp := stopwatch(func() { s1r2.WaitCount("events_local", nodeCount(ctx, t, s1r1, "events_local"), 2*time.Minute) })
	t.Logf("s1r2 SIGKILLed, 500 rows inserted, restarted in %s, caught up %s later", restart, caughtUp)
	requireDistributedRows(ctx, t, c, want)

	// Quorum inserts: refused with a replica down, retried after: written once.
	s2r2.Kill()
	quorum := s2r1.SessionConn(map[string]any{"insert_quorum": 2, "insert_quorum_timeout": 3000})
	qblock := clusterKeys("quorum", 0, 10)
	before = nodeCount(ctx, t, s2r1, "events_local")
	if err := tryInsertKeys(ctx, quorum, "events_local", qblock); err == nil {
		t.Fatal("insert_quorum=2 with one of the shard's two replicas down: succeeded")
	} else {
		t.Logf("insert_quorum=2 with a replica down: %v", err)
	}
	s2r2.Start()
	insertKeys(ctx, t, quorum, "events_local", qblock)
	syncReplicaOn(ctx, t, s2r2, "events_local")
	if after := nodeCount(ctx, t, s2r2, "events_local"); after != before+uint64(len(qblock)) {
		t.Fatalf("quorum block retried after a failure: %d rows, want %d", after, before+uint64(len(qblock)))
	}
	want += uint64(len(qblock))

	// ZooKeeper stopped: replicated inserts fail; restarted: they resume.
	c.StopZooKeeper()
	zblock := clusterKeys("zk", 0, 10)
	if err := tryInsertKeys(ctx, s1r1.Conn, "events_local", zblock); err == nil {
		t.Fatal("insert into a replicated table with ZooKeeper stopped: succeeded")
	} else {
		t.Logf("insert with ZooKeeper stopped: %v", err)
	}
	c.StartZooKeeper()
	zkBack := time.Now()
	if err := pollUntil(ctx, time.Minute, func(ctx context.Context) error {
		return tryInsertKeys(ctx, s1r1.Conn, "events_local", zblock)
	}); err != nil {
		t.Fatalf("inserts did not resume within a minute of ZooKeeper's restart: %v", err)
	}
	t.Logf("inserts resumed %s after ZooKeeper was back", time.Since(zkBack).Round(100*time.Millisecond))
	want += uint64(len(zblock))
	syncReplicaOn(ctx, t, s1r2, "events_local")
	requireDistributedRows(ctx, t, c, want)

	// A later version of a key lands on the same shard, so FINAL through the Distributed table keeps one row per
	// key, the highest version (what the sink relies on for a signal's versions).
	if err := tryInsertKeysVersion(ctx, s2r2.SessionConn(syncInsert), "events", clusterKeys("a", 0, 50), 2); err != nil {
		t.Fatalf("inserting version 2 of 50 keys: %v", err)
	}
	for _, n := range c.Nodes { // a query reads one replica of each shard: wait until each has every part
		syncReplicaOn(ctx, t, n, "events_local")
	}
	var rows, v2 uint64
	queryNode(ctx, t, s1r2, "SELECT count(), countIf(version = 2) FROM events FINAL WHERE key LIKE 'a%'", &rows, &v2)
	if rows != 1000 || v2 != 50 { // one row per key of the first 1000, 50 of them now at version 2
		t.Fatalf("FINAL through the Distributed table: %d rows of the first 1000 keys, %d of version 2, want 1000 and 50", rows, v2)
	}
}

func clusterKeys(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, from+i)
	}
	return out
}

// tryInsertKeys inserts one block of (key, 1, "p-"+key) rows into table.
func tryInsertKeys(ctx context.Context, conn driver.Conn, table string, ks []string) error {
	return tryInsertKeysVersion(ctx, conn, table, ks, 1)
}

// tryInsertKeysVersion inserts one block of (key, version, "p-"+key) rows into table.
func tryInsertKeysVersion(ctx context.Context, conn driver.Conn, table string, ks []string, version uint64) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" (key, version, payload)")
	if err != nil {
		return err
	}
	for _, k := range ks {
		if err := b.Append(k, version, "p-"+k); err != nil {
			return err
		}
	}
	return b.Send()
}

func insertKeys(ctx context.Context, t testing.TB, conn driver.Conn, table string, ks []string) {
	t.Helper()
	if err := tryInsertKeys(ctx, conn, table, ks); err != nil {
		t.Fatalf("inserting %d rows into %s: %v", len(ks), table, err)
	}
}

func syncReplicaOn(ctx context.Context, t testing.TB, n *ClickHouseNode, table string) {
	t.Helper()
	if err := n.Conn.Exec(ctx, "SYSTEM SYNC REPLICA "+n.c.Database+"."+table); err != nil {
		t.Fatalf("SYSTEM SYNC REPLICA %s on %s: %v", table, n.Name, err)
	}
}

func nodeCount(ctx context.Context, t testing.TB, n *ClickHouseNode, table string) uint64 {
	t.Helper()
	c, err := n.Count(ctx, table)
	if err != nil {
		t.Fatalf("count of %s on %s: %v", table, n.Name, err)
	}
	return c
}

func queryNode(ctx context.Context, t testing.TB, n *ClickHouseNode, query string, dest ...any) {
	t.Helper()
	if err := n.Conn.QueryRow(ctx, query).Scan(dest...); err != nil {
		t.Fatalf("%s on %s: %v", query, n.Name, err)
	}
}

// requireDistributedRows fails the test unless a query through the Distributed table, from every node, counts want
// rows with want distinct keys: every row once (no FINAL: a block written twice would show), none counted from
// both replicas of a shard. It first waits until every replica has fetched every part: a query reads one replica of each shard,
// which may not have the latest inserts yet.
func requireDistributedRows(ctx context.Context, t testing.TB, c *ClickHouseCluster, want uint64) {
	t.Helper()
	for _, n := range c.Nodes {
		syncReplicaOn(ctx, t, n, "events_local")
	}
	for _, n := range c.Nodes {
		var rows, distinct uint64
		if err := n.Conn.QueryRow(ctx, "SELECT count(), uniqExact(key) FROM events").Scan(&rows, &distinct); err != nil {
			t.Fatalf("query through the Distributed table on %s: %v", n.Name, err)
		}
		if rows != want || distinct != want {
			t.Fatalf("through the Distributed table on %s: %d rows, %d distinct keys, want %d of each", n.Name, rows, distinct, want)
		}
	}
}
