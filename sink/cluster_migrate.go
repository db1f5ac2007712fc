package sink

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ShardingKey is the expression every Distributed table of a cluster shards by, and the one the sink evaluates
// to pick the shard it inserts a row into (Cluster.shardOf asks the server, so both use ClickHouse's own hash).
// It is the tenant: every analyst query and view reads one tenant, and what must be folded or joined together
// lives inside one tenant (a signal's versions, a lead's fields, a visitor's cold history and the identity
// links that make it a lead's). With the tenant as the key every FINAL, IN and JOIN runs within one shard and
// the cluster answers exactly what one node answers; the price is that one tenant's rows never spread past one
// shard (sink/README.md, "ClickHouse cluster").
const ShardingKey = "cityHash64(tenant)"

// LocalSuffix names the replicated table of a shard behind each Distributed table: signals_local behind signals.
const LocalSuffix = "_local"

// ZooKeeperPathPrefix is where every replicated table of the sink keeps its ZooKeeper metadata:
// <prefix>/{shard}/<database>/<table>, {shard} and {replica} being the server's macros.
const ZooKeeperPathPrefix = "/clickhouse/tables"

var (
	createTable = regexp.MustCompile(`(?s)^CREATE TABLE IF NOT EXISTS ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+) \((.*)\) ENGINE = ([A-Za-z]*MergeTree)\(([^)]*)\)(.*)$`)
	alterTable  = regexp.MustCompile(`^ALTER TABLE ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\b`)
	dropTable   = regexp.MustCompile(`^DROP TABLE IF EXISTS ([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$`)
)

// clusterStep is one statement of a migration as a cluster node runs it. firstReplica: run it only on the first
// replica of each shard (an ALTER of a replicated table, which replication carries to the other replicas).
type clusterStep struct {
	Step
	firstReplica bool
}

// clusterPlan rewrites every migration, in order, for a node of cluster: each CREATE TABLE becomes the table's
// Replicated* form named <table>_local (ZooKeeper path per shard, replica from the {replica} macro) plus a
// Distributed table under the original name, sharded by ShardingKey. Materialized views and INSERT ... SELECT
// read and write the local tables (each node then folds its own shard's rows, as one node does all of them);
// plain views keep reading the Distributed names, so analysts and the shipped queries see the whole cluster.
// An ALTER goes to the local table on the first replica of each shard and to the Distributed table (except a
// codec change: a Distributed table stores nothing) on every node; a DROP of a table drops both. The plan of
// every migration is computed, applied or not, because a later one needs to know which names are tables.
func clusterPlan(all []Migration, database, cluster string) map[uint32][]clusterStep {
	tables := map[string]bool{}
	local := func(sql string) string {
		for t := range tables {
			re := regexp.MustCompile(`\b` + regexp.QuoteMeta(database+"."+t) + `\b`)
			sql = re.ReplaceAllString(sql, database+"."+t+LocalSuffix)
		}
		return sql
	}
	plan := map[uint32][]clusterStep{}
	for _, m := range all {
		var out []clusterStep
		for _, st := range m.Steps(database) {
			add := func(sql string, firstReplica bool) {
				s := st
				s.SQL = sql
				out = append(out, clusterStep{Step: s, firstReplica: firstReplica})
			}
			switch sql := st.SQL; {
			case createTable.MatchString(sql):
				g := createTable.FindStringSubmatch(sql)
				db, name, cols, engine, args, rest := g[1], g[2], g[3], g[4], g[5], g[6]
				zk := fmt.Sprintf("'%s/{shard}/%s/%s', '{replica}'", ZooKeeperPathPrefix, db, name)
				if strings.TrimSpace(args) != "" {
					zk += ", " + args
				}
				add(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s (%s) ENGINE = Replicated%s(%s)%s",
					db, name, LocalSuffix, cols, engine, zk, rest), false)
				add(fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s AS %s.%s%s ENGINE = Distributed(%s, %s, %s%s, %s)",
					db, name, db, name, LocalSuffix, cluster, db, name, LocalSuffix, ShardingKey), false)
				tables[name] = true
			case strings.HasPrefix(sql, "CREATE MATERIALIZED VIEW"), strings.HasPrefix(sql, "INSERT INTO"):
				add(local(sql), false)
			case alterTable.MatchString(sql) && tables[alterTable.FindStringSubmatch(sql)[2]]:
				add(local(sql), true)
				if !strings.Contains(sql, "CODEC(") {
					add(sql, false)
				}
			case dropTable.MatchString(sql) && tables[dropTable.FindStringSubmatch(sql)[2]]:
				name := dropTable.FindStringSubmatch(sql)[2]
				add(sql, false)
				add(sql+LocalSuffix, false)
				delete(tables, name)
			case strings.HasPrefix(sql, "CREATE VIEW"):
				add(globalize(sql), false)
			default: // DROP of a view
				add(sql, false)
			}
		}
		plan[m.Version] = out
	}
	return plan
}

var inOrJoin = regexp.MustCompile(`\b(NOT IN|IN|ANY INNER JOIN|ANY LEFT JOIN|INNER JOIN|LEFT JOIN) \(`)

// globalize makes every IN and JOIN with a subquery of query GLOBAL: run once by the server the query came to,
// over the whole cluster, its result sent to each shard with the query. Without it ClickHouse refuses an IN over
// a Distributed table inside a query of another (distributed_product_mode = 'deny'); a non-GLOBAL subquery run on
// each shard would read the whole cluster from every shard. On one node GLOBAL changes nothing.
func globalize(query string) string {
	return inOrJoin.ReplaceAllString(query, "GLOBAL $1 (")
}

// ClusterNode is one server of a cluster as MigrateCluster sees it.
type ClusterNode struct {
	// Addr names the node in errors.
	Addr string
	// Conn is a connection to it without a default database.
	Conn driver.Conn
	// FirstReplica is true for the first replica of its shard, which runs the ALTERs of replicated tables.
	FirstReplica bool
}

// MigrateCluster applies the migrations to every node of cluster, node by node, in clusterPlan's form. Each node
// records what it applied in its own schema_migrations (a plain table, not replicated), so the record is checked
// on every node: a node that was down, or added later, gets exactly the migrations it lacks the next time any
// sink or `sink migrate` runs. Node by node instead of ON CLUSTER: it needs no distributed_ddl queue, an INSERT
// ... SELECT cannot run ON CLUSTER, and a node that does not answer fails the migration at once instead of
// after distributed_ddl_task_timeout. It returns, per node address, the migrations applied there.
func MigrateCluster(ctx context.Context, nodes []ClusterNode, database, cluster string) (map[string][]Migration, error) {
	if !databaseName.MatchString(cluster) {
		return nil, fmt.Errorf("%w: -clickhouse-cluster: %q is not a plain identifier", ErrConfig, cluster)
	}
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	plan := clusterPlan(all, database, cluster)
	done := map[string][]Migration{}
	// Migration by migration, each on every node before the next: a replica creating a replicated table must find
	// the structure ZooKeeper has, which a later ALTER on the shard's first replica would already have changed.
	for _, m := range all {
		for _, n := range nodes {
			steps := func(m Migration) []Step {
				var out []Step
				for _, st := range plan[m.Version] {
					if !st.firstReplica || n.FirstReplica {
						out = append(out, st.Step)
					}
				}
				return out
			}
			applied, err := migrate(ctx, n.Conn, database, steps, m.Version)
			done[n.Addr] = append(done[n.Addr], applied...)
			if err != nil {
				return done, fmt.Errorf("migrating clickhouse node %s: %w", n.Addr, err)
			}
		}
	}
	return done, nil
}
