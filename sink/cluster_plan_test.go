package sink

import (
	"strings"
	"testing"
)

// TestClusterPlan: how each kind of migration statement is rewritten for a cluster node (no server needed; the
// cluster suite applies the plan to the 2x2 cluster).
func TestClusterPlan(t *testing.T) {
	all, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	plan := clusterPlan(all, "db", "c1")
	find := func(version uint32, prefix string) []clusterStep {
		var out []clusterStep
		for _, st := range plan[version] {
			if strings.HasPrefix(st.SQL, prefix) {
				out = append(out, st)
			}
		}
		if len(out) == 0 {
			t.Fatalf("migration %d: no statement starting %q in %v", version, prefix, plan[version])
		}
		return out
	}
	for _, tc := range []struct {
		version      uint32
		prefix       string
		contains     []string
		absent       []string
		firstReplica bool
	}{
		{1, "CREATE TABLE IF NOT EXISTS db.signals_local", []string{
			"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/signals', '{replica}', version)",
			"PARTITION BY toYYYYMM(event_time)", "ORDER BY (tenant, toDate(event_time), source, type, event, signal_id)"}, nil, false},
		{1, "CREATE TABLE IF NOT EXISTS db.signals AS", []string{
			"AS db.signals_local ENGINE = Distributed(c1, db, signals_local, cityHash64(tenant))"}, nil, false},
		{3, "CREATE TABLE IF NOT EXISTS db.dead_letters_local", []string{
			"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/dead_letters', '{replica}')"}, nil, false},
		{4, "CREATE MATERIALIZED VIEW IF NOT EXISTS db.signal_volume_minute_mv TO db.signal_volume_minute_local", []string{
			"FROM db.signals_local"}, []string{"FROM db.signals\n"}, false},
		{7, "ALTER TABLE db.signals_local", []string{"ADD COLUMN group_id"}, nil, true},
		{7, "ALTER TABLE db.signals\n", []string{"ADD COLUMN group_id"}, nil, false},
		{8, "CREATE VIEW IF NOT EXISTS db.signals_latest", []string{"FROM db.signals FINAL"}, nil, false},
		{9, "INSERT INTO db.lead_signals_local", []string{"FROM db.signals_local"}, nil, false},
		{9, "CREATE VIEW IF NOT EXISTS db.leads", []string{"GLOBAL IN (SELECT tenant, email FROM db.identities_latest)",
			"FROM db.lead_fields FINAL"}, nil, false},
		{10, "DROP TABLE IF EXISTS db.dead_letters_local", nil, nil, false},
		{11, "CREATE TABLE IF NOT EXISTS db.erasure_log_local", []string{
			"ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/db/erasure_log', '{replica}')"}, nil, false},
		{12, "ALTER TABLE db.signals_local", []string{"CODEC(ZSTD(3))"}, nil, true},
	} {
		for _, st := range find(tc.version, tc.prefix) {
			for _, c := range tc.contains {
				if !strings.Contains(st.SQL, c) {
					t.Errorf("migration %d %q: no %q in\n%s", tc.version, tc.prefix, c, st.SQL)
				}
			}
			for _, c := range tc.absent {
				if strings.Contains(st.SQL, c) {
					t.Errorf("migration %d %q: %q in\n%s", tc.version, tc.prefix, c, st.SQL)
				}
			}
			if st.firstReplica != tc.firstReplica {
				t.Errorf("migration %d %q: firstReplica %v, want %v", tc.version, tc.prefix, st.firstReplica, tc.firstReplica)
			}
		}
	}
	// A codec is storage: the Distributed table, which stores nothing, is not altered.
	for _, st := range plan[12] {
		if strings.HasPrefix(st.SQL, "ALTER TABLE db.signals\n") || strings.HasPrefix(st.SQL, "ALTER TABLE db.signals ") {
			t.Errorf("migration 12 alters the Distributed table: %s", st.SQL)
		}
	}
}
