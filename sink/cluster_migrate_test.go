package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// clusterNodes is c's nodes as MigrateCluster takes them.
func clusterNodes(c *testenv.ClickHouseCluster) []sink.ClusterNode {
	var out []sink.ClusterNode
	for _, n := range c.Nodes {
		out = append(out, sink.ClusterNode{Addr: n.Addr, Conn: n.Conn, FirstReplica: n.Replica == 1})
	}
	return out
}

// TestClusterMigrate: on the 2x2 cluster every node gets each table's Replicated* form as <table>_local and a
// Distributed table under the table's name, records every migration in its own schema_migrations, and a second
// run applies nothing anywhere.
func TestClusterMigrate(t *testing.T) {
	c := testenv.NewClickHouseCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all, err := sink.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	done, err := sink.MigrateCluster(ctx, clusterNodes(c), c.Database, c.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if len(done[n.Addr]) != len(all) {
			t.Fatalf("%s: applied %d migrations, want %d", n.Name, len(done[n.Addr]), len(all))
		}
		for table, want := range map[string]string{
			"signals_local": "ReplicatedReplacingMergeTree", "signals": "Distributed",
			"signal_volume_minute_local": "ReplicatedAggregatingMergeTree", "erasure_log_local": "ReplicatedMergeTree",
			"dead_letters_v2": "Distributed", "dead_letters": "View", "lead_signals_mv": "MaterializedView",
		} {
			var engine string
			if err := n.Conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = ?",
				c.Database, table).Scan(&engine); err != nil {
				t.Fatalf("%s: %s: %v", n.Name, table, err)
			}
			if engine != want {
				t.Errorf("%s: %s is %s, want %s", n.Name, table, engine, want)
			}
		}
		var recorded uint64
		if err := n.Conn.QueryRow(ctx, "SELECT uniqExact(version) FROM schema_migrations").Scan(&recorded); err != nil {
			t.Fatal(err)
		}
		if recorded != uint64(len(all)) {
			t.Errorf("%s records %d migrations, want %d", n.Name, recorded, len(all))
		}
	}
	again, err := sink.MigrateCluster(ctx, clusterNodes(c), c.Database, c.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	for addr, ms := range again {
		if len(ms) != 0 {
			t.Errorf("second run applied %d migrations on %s", len(ms), addr)
		}
	}
}
