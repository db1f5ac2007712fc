package sink

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ParseShards reads node addresses grouped by shard: shards separated by ";", the replicas of a shard by ",", in
// the order of the cluster's remote_servers ("s1r1:9000,s1r2:9000;s2r1:9000,s2r2:9000").
func ParseShards(v string) ([][]string, error) {
	var out [][]string
	for _, shard := range strings.Split(v, ";") {
		var replicas []string
		for _, a := range strings.Split(shard, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("%w: -clickhouse-shards: %q: %v", ErrConfig, a, err)
			}
			replicas = append(replicas, a)
		}
		if len(replicas) == 0 {
			return nil, fmt.Errorf("%w: -clickhouse-shards: %q has an empty shard", ErrConfig, v)
		}
		out = append(out, replicas)
	}
	return out, nil
}

// clusterWriter inserts each block of a batch straight into the replicated local table of the shard that
// ShardingKey names for its rows, with insert_quorum, so a block the sink was told is inserted is on
// InsertQuorum replicas of its shard before any offset below it is committed. A retried block (the same rows in
// the same order: the batch is not reordered between attempts) is dropped by the replicated engine's block
// deduplication, on whichever replica of the shard the retry reaches. Through a Distributed table instead, an
// insert is acknowledged once it is queued on the node that took it, before it is on any replica of its shard.
type clusterWriter struct {
	database string
	shards   []*shardWriter
	// lookup evaluates ShardingKey % len(shards) for a tenant on the server, so the sink and the Distributed tables
	// never disagree on a hash; tenants are few, so each is asked once.
	lookup driver.Conn
	mu     sync.Mutex
	shard  map[string]int
	// dedup is whether a retried block may be deduplicated (and so carries a fixed loaded_at); known once the
	// server was asked (probed). See probe.
	probed, dedup bool
}

// shardWriter holds one single-connection client per replica of a shard, each with the quorum SET on its session
// before every insert: ClickHouse 18.16 ignores settings sent with an INSERT whose rows come from the client (a
// clickhouse-go batch), and a client that reconnected after a restart has a fresh session.
type shardWriter struct {
	num      int
	replicas []driver.Conn
	addrs    []string
	settings []string
	mu       sync.Mutex
	next     int // the replica the next insert tries first: the one that last succeeded
}

func newClusterWriter(cfg Config, lookup driver.Conn) (*clusterWriter, error) {
	w := &clusterWriter{database: cfg.Database, lookup: lookup, shard: map[string]int{}}
	settings := []string{
		"SET insert_quorum = " + strconv.Itoa(cfg.InsertQuorum),
		// Below InsertTimeout, so a replica lost mid-insert ends the attempt with the server's error, not ours.
		"SET insert_quorum_timeout = " + strconv.FormatInt(cfg.InsertTimeout.Milliseconds()/2, 10),
	}
	for i, addrs := range cfg.ClickHouseShards {
		sw := &shardWriter{num: i + 1, addrs: addrs, settings: settings}
		for _, a := range addrs {
			conn, err := clickhouse.Open(&clickhouse.Options{
				Addr:         []string{a},
				Auth:         clickhouse.Auth{Username: cfg.ClickHouseUser, Password: cfg.ClickHousePassword},
				TLS:          cfg.ClickHouseTLS,
				DialTimeout:  5 * time.Second,
				MaxOpenConns: 1,
				MaxIdleConns: 1,
			})
			if err != nil {
				w.close()
				return nil, fmt.Errorf("opening clickhouse %s: %w", a, err)
			}
			sw.replicas = append(sw.replicas, conn)
		}
		w.shards = append(w.shards, sw)
	}
	return w, nil
}

func (w *clusterWriter) close() {
	for _, sw := range w.shards {
		for _, c := range sw.replicas {
			_ = c.Close()
		}
	}
}

// shardOf returns the 0-based shard of tenant's rows.
func (w *clusterWriter) shardOf(ctx context.Context, tenant string) (int, error) {
	w.mu.Lock()
	n, ok := w.shard[tenant]
	w.mu.Unlock()
	if ok {
		return n, nil
	}
	var h uint64
	q := fmt.Sprintf("SELECT toUInt64(%s %% %d) FROM (SELECT ? AS tenant)", ShardingKey, len(w.shards))
	if err := w.lookup.QueryRow(ctx, q, tenant).Scan(&h); err != nil {
		return 0, fmt.Errorf("computing the shard of tenant %q: %w", tenant, err)
	}
	w.mu.Lock()
	w.shard[tenant] = int(h)
	w.mu.Unlock()
	return int(h), nil
}

// probe decides, once, how retries are made exact. Deduplicating a retried block is only safe where the
// materialized views deduplicate their own blocks (deduplicate_blocks_in_dependent_materialized_views, current
// releases): ClickHouse 18.16 skips every materialized view of a block it drops as a duplicate, so when the first
// attempt stored the signals but not the views' rows (a quorum lost mid-insert), the retry would be dropped whole
// and lead_signals, lead_fields and signal_volume_minute would never get those rows (TestClusterSinkChaos lost 105
// lead_signals rows so). There the sink turns insert_deduplicate off: a retry is stored again, views included,
// and the ReplacingMergeTree tables fold the copies as they fold any redelivery (FINAL, the latest views).
func (w *clusterWriter) probe(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.probed {
		return nil
	}
	var n uint64
	if err := w.lookup.QueryRow(ctx, "SELECT count() FROM system.settings WHERE name = "+
		"'deduplicate_blocks_in_dependent_materialized_views'").Scan(&n); err != nil {
		return fmt.Errorf("reading the server's settings: %w", err)
	}
	w.dedup = n > 0
	extra := "SET insert_deduplicate = 0"
	if w.dedup {
		extra = "SET deduplicate_blocks_in_dependent_materialized_views = 1"
	}
	for _, sw := range w.shards {
		sw.settings = append(sw.settings, extra)
	}
	w.probed = true
	return nil
}

// insert splits b by shard and inserts every part into its shard, the shards in parallel. It fails if any part
// failed; the retry sends every part again, and the shards that had taken theirs drop them as duplicates or (on
// 18.16, see probe) store them again for the ReplacingMergeTree tables to fold.
func (w *clusterWriter) insert(ctx context.Context, b buffer) error {
	if err := w.probe(ctx); err != nil {
		return err
	}
	parts, err := b.byShard(len(w.shards), func(tenant string) (int, error) { return w.shardOf(ctx, tenant) }, LocalSuffix, w.dedup)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(w.shards))
	for i, part := range parts {
		if part == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.shards[i].insert(ctx, part)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// insert tries each replica once, starting with the one that took the last insert; an error names every replica's.
func (sw *shardWriter) insert(ctx context.Context, b buffer) error {
	sw.mu.Lock()
	first := sw.next
	sw.mu.Unlock()
	var errs []error
	for k := range sw.replicas {
		r := (first + k) % len(sw.replicas)
		err := sw.insertOn(ctx, r, b)
		if err == nil {
			sw.mu.Lock()
			sw.next = r
			sw.mu.Unlock()
			return nil
		}
		if refusedByData(err) || ctx.Err() != nil {
			return err // the other replica refuses the same rows; the caller isolates them
		}
		errs = append(errs, fmt.Errorf("shard %d replica %s: %w", sw.num, sw.addrs[r], err))
	}
	return errors.Join(errs...)
}

func (sw *shardWriter) insertOn(ctx context.Context, r int, b buffer) error {
	conn := sw.replicas[r]
	for _, set := range sw.settings {
		if err := conn.Exec(ctx, set); err != nil {
			return fmt.Errorf("%s: %w", set, err)
		}
	}
	return b.insert(ctx, conn)
}

// onEveryShard runs stmt (a mutation of a replicated table) on one replica of every shard, the first that takes
// it; replication carries it to the shard's other replicas.
func (w *clusterWriter) onEveryShard(ctx context.Context, stmt string) error {
	for _, sw := range w.shards {
		var errs []error
		for i, conn := range sw.replicas {
			err := conn.Exec(ctx, stmt)
			if err == nil {
				errs = nil
				break
			}
			errs = append(errs, fmt.Errorf("shard %d replica %s: %w", sw.num, sw.addrs[i], err))
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
	}
	return nil
}

// checkShards compares the shards given with the cluster's remote_servers (system.clusters on the node conn
// reaches): a replica listed under the wrong shard would get rows the Distributed tables look for elsewhere.
func checkShards(ctx context.Context, conn driver.Conn, cluster string, shards [][]string) error {
	rows, err := conn.Query(ctx, "SELECT shard_num, host_name, host_address, port FROM system.clusters WHERE cluster = ?", cluster)
	if err != nil {
		return fmt.Errorf("reading system.clusters: %w", err)
	}
	defer rows.Close()
	where := map[string]int{}
	total := 0
	for rows.Next() {
		var shard uint32
		var name, addr string
		var port uint16
		if err := rows.Scan(&shard, &name, &addr, &port); err != nil {
			return fmt.Errorf("reading system.clusters: %w", err)
		}
		p := strconv.Itoa(int(port))
		where[net.JoinHostPort(name, p)] = int(shard)
		where[net.JoinHostPort(addr, p)] = int(shard)
		total = max(total, int(shard))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading system.clusters: %w", err)
	}
	if total == 0 {
		return fmt.Errorf("%w: -clickhouse-cluster: no cluster %q in system.clusters", ErrConfig, cluster)
	}
	if total != len(shards) {
		return fmt.Errorf("%w: -clickhouse-shards: %d shards given, cluster %q has %d", ErrConfig, len(shards), cluster, total)
	}
	for i, replicas := range shards {
		for _, a := range replicas {
			if s, ok := where[a]; !ok || s != i+1 {
				return fmt.Errorf("%w: -clickhouse-shards: %s is listed in shard %d, cluster %q has it in shard %d (0: not at all)",
					ErrConfig, a, i+1, cluster, s)
			}
		}
	}
	return nil
}

// clusterAddrs is every node of the cluster, shard by shard: reads and queries go to the first that answers.
func (c Config) clusterAddrs() []string {
	var out []string
	for _, s := range c.ClickHouseShards {
		out = append(out, s...)
	}
	return out
}

// MigrateClusterConfig applies the migrations to every node of cfg's cluster (MigrateCluster) after checking
// cfg.ClickHouseShards against the cluster's remote_servers. It returns what it applied, per node address.
func MigrateClusterConfig(ctx context.Context, cfg Config) (map[string][]Migration, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var nodes []ClusterNode
	defer func() {
		for _, n := range nodes {
			_ = n.Conn.Close()
		}
	}()
	for _, shard := range cfg.ClickHouseShards {
		for i, a := range shard {
			one := cfg
			one.ClickHouseAddr, one.ClickHouseCluster = a, ""
			conn, err := OpenClickHouse(one)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, ClusterNode{Addr: a, Conn: conn, FirstReplica: i == 0})
		}
	}
	if err := checkShards(ctx, nodes[0].Conn, cfg.ClickHouseCluster, cfg.ClickHouseShards); err != nil {
		return nil, err
	}
	return MigrateCluster(ctx, nodes, cfg.Database, cfg.ClickHouseCluster)
}
