// Package sink loads the pipeline's output topics into ClickHouse: signals.resolved into signals, identities into
// identities, signals.dlq into dead_letters. It batches per table, inserts with clickhouse-go's native batches, and
// commits Kafka offsets only after ClickHouse has acknowledged every row below them, so a crash or a replay
// re-inserts rows that the ReplacingMergeTree tables fold back into one logical row each.
package sink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Config of a Sink. The zero value of every field but Brokers, ClickHouseAddr and Database means its default.
type Config struct {
	// Brokers are the Kafka seed brokers (flag -brokers). Required.
	Brokers []string
	// Topics names the deployment's topics (flag -topic-prefix, -partitions). Its Prefix also prefixes the consumer
	// group: "<prefix>sink".
	Topics schemas.Config
	// ClickHouseAddr is the native-protocol address (flag -clickhouse-addr). Required.
	ClickHouseAddr string
	// Database is the ClickHouse database the migrations create and the sink loads (flag -clickhouse-database).
	// Required; letters, digits and underscores only, because it is spliced into DDL.
	Database string
	// ClickHouseUser and ClickHousePassword authenticate (default user "default", empty password).
	ClickHouseUser     string
	ClickHousePassword string
	// ClickHouseTLS, when set, connects to ClickHouse over TLS (flags -clickhouse-tls, -clickhouse-tls-ca-file,
	// -clickhouse-tls-server-name; ClickHouse Cloud's native port 9440 needs it).
	ClickHouseTLS *tls.Config
	// ClickHouseCluster, when set, runs the sink on that ClickHouse cluster (flag -clickhouse-cluster, the name in
	// remote_servers) instead of one server: the migrations create Replicated* tables and Distributed tables on
	// every node of ClickHouseShards (MigrateCluster), and each block is inserted into the replicated table of its
	// shard with InsertQuorum (clusterWriter). ClickHouseAddr is then the node (any) that reads and queries go to.
	// Empty (the default): one server, as always.
	ClickHouseCluster string
	// ClickHouseShards are the cluster's nodes grouped by shard, in remote_servers order (flag -clickhouse-shards,
	// "a:9000,b:9000;c:9000,d:9000"; ParseShards). Required with ClickHouseCluster; checked against
	// system.clusters at start.
	ClickHouseShards [][]string
	// InsertQuorum is insert_quorum of every cluster insert (flag -insert-quorum; default 2, every replica of a
	// shard of two): the insert returns once that many replicas of its shard hold the block. With quorum = the
	// shard's replica count, a shard with a replica down takes no inserts (the sink pauses and retries) until
	// it is back; a shard of three replicas with quorum 2 keeps loading through one replica's loss.
	InsertQuorum int
	// KafkaConnOpts are how every Kafka client of the sink connects: TLS and SASL (kafkaconn.Flags.Opts).
	KafkaConnOpts []kgo.Opt
	// InstanceID, when set, makes the sink a static member of its consumer group (flag -instance-id): unique per
	// instance and stable across its restarts, so a sink restarted within SessionTimeout rejoins as itself and
	// takes its partitions back at once, instead of waiting for the group to expire its predecessor. A static
	// member does not leave the group when it stops: after a permanent scale-down its partitions wait out the
	// session timeout.
	InstanceID string
	// SessionTimeout is how long the group waits for a member that stopped heartbeating before it moves its
	// partitions (flag -session-timeout; default 45 s, kgo's).
	SessionTimeout time.Duration

	// FlushRows flushes a table's batch when it holds this many rows (default 50,000; flag -flush-rows).
	FlushRows int
	// FlushBytes flushes a table's batch when its rows hold about this many bytes (default 32 MiB; flag
	// -flush-bytes). Together with FlushRows it bounds the sink's memory.
	FlushBytes int
	// FlushInterval flushes a table's batch when its oldest row is this old (default 1 s; flag -flush-interval):
	// at steady state about one insert per second per table.
	FlushInterval time.Duration
	// RetryMin and RetryMax bound the capped exponential backoff between insert attempts while ClickHouse is down
	// or failing (defaults 100 ms and 10 s). Fetching is paused meanwhile; nothing is dropped.
	RetryMin, RetryMax time.Duration
	// InsertConcurrency is how many batches are inserted at once (default 2; flag -insert-concurrency). Two
	// overlap one batch's client-side encoding with another's server-side work. Order between batches does not
	// matter: every table is a ReplacingMergeTree keyed on the record's identity.
	InsertConcurrency int
	// InsertTimeout bounds one insert attempt (default 60 s).
	InsertTimeout time.Duration
	// MaxPartitionsPerInsert is the most monthly partitions one INSERT may touch (default 100; flag
	// -max-partitions-per-insert): current ClickHouse refuses a larger block (max_partitions_per_insert_block,
	// default 100), so a batch spanning more event-time months, as a backfill can, is inserted in several blocks.
	// Keep it at or below the server's setting.
	MaxPartitionsPerInsert int
	// MaxRefusedRows is how many rows ClickHouse may refuse for their data (a value a column or a check cannot
	// take), in one batch or in a row since it last took a block of the table, before the sink stops isolating
	// them (default 100; flag -max-refused-rows). Up to that many, each refused row goes to dead_letters and the
	// rest of the batch is stored; beyond it the cause is not a few bad rows but something like a schema
	// mismatch, so the batch is retried until it is taken.
	MaxRefusedRows int
	// MaxPollRecords caps the records taken from the client per poll (default 10,000).
	MaxPollRecords int

	// SchemaRegistry is a Schema Registry's URL, Confluent's API (flag -schema-registry, env
	// SIGNALSTAGE_SCHEMA_REGISTRY; "" by default: none). The sink and `sink tail` read single-object and
	// registry-framed records alike; a registry-framed record read without a registry is dead-lettered, and a
	// registry that does not answer fails Run and Tail at start. (The records the sink itself writes, by
	// `sink forget` and redrive, stay single-object encoded.)
	SchemaRegistry string
	// Registry receives the sink's metrics (default: a fresh registry, so tests never collide).
	Registry prometheus.Registerer
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid sink config")

var databaseName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c Config) withDefaults() Config {
	if c.FlushRows == 0 {
		c.FlushRows = 50_000
	}
	if c.FlushBytes == 0 {
		c.FlushBytes = 32 << 20
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.InsertConcurrency == 0 {
		c.InsertConcurrency = 2
	}
	if c.InsertTimeout == 0 {
		c.InsertTimeout = time.Minute
	}
	if c.MaxPartitionsPerInsert == 0 {
		c.MaxPartitionsPerInsert = 100
	}
	if c.MaxRefusedRows == 0 {
		c.MaxRefusedRows = 100
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 10_000
	}
	if c.InsertQuorum == 0 {
		c.InsertQuorum = 2
	}
	if c.ClickHouseUser == "" {
		c.ClickHouseUser = "default"
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	bad := func(flag, format string, args ...any) error {
		return fmt.Errorf("%w: -%s: %s", ErrConfig, flag, fmt.Sprintf(format, args...))
	}
	switch {
	case len(c.Brokers) == 0:
		return bad("brokers", "no broker given")
	case c.Topics.Replication.Validate() != nil:
		return fmt.Errorf("%w: %w", ErrConfig, c.Topics.Replication.Validate())
	case c.ClickHouseAddr == "":
		return bad("clickhouse-addr", "empty")
	case !databaseName.MatchString(c.Database):
		return bad("clickhouse-database", "%q is not a plain identifier", c.Database)
	case c.FlushRows < 1:
		return bad("flush-rows", "%d is less than 1", c.FlushRows)
	case c.FlushBytes < 1:
		return bad("flush-bytes", "%d is less than 1", c.FlushBytes)
	case c.FlushInterval < time.Millisecond:
		return bad("flush-interval", "%s is less than 1ms", c.FlushInterval)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return bad("retry-max", "backoff bounds %s..%s are not increasing", c.RetryMin, c.RetryMax)
	case c.InsertConcurrency < 1:
		return bad("insert-concurrency", "%d is less than 1", c.InsertConcurrency)
	case c.MaxPartitionsPerInsert < 1:
		return bad("max-partitions-per-insert", "%d is less than 1", c.MaxPartitionsPerInsert)
	case c.MaxRefusedRows < 1:
		return bad("max-refused-rows", "%d is less than 1", c.MaxRefusedRows)
	case c.ClickHouseCluster != "" && !databaseName.MatchString(c.ClickHouseCluster):
		return bad("clickhouse-cluster", "%q is not a plain identifier", c.ClickHouseCluster)
	case c.ClickHouseCluster != "" && len(c.ClickHouseShards) == 0:
		return bad("clickhouse-shards", "empty, and -clickhouse-cluster is %q", c.ClickHouseCluster)
	case c.ClickHouseCluster == "" && len(c.ClickHouseShards) > 0:
		return bad("clickhouse-cluster", "empty, and -clickhouse-shards names nodes")
	case c.ClickHouseCluster != "" && c.InsertQuorum < 1:
		return bad("insert-quorum", "%d is less than 1", c.InsertQuorum)
	case c.ClickHouseCluster != "" && c.InsertQuorum > minReplicas(c.ClickHouseShards):
		return bad("insert-quorum", "%d is more than the %d replicas of the smallest shard", c.InsertQuorum, minReplicas(c.ClickHouseShards))
	case c.Topics.Partitions < 0:
		return bad("partitions", "%d is negative", c.Topics.Partitions)
	}
	return nil
}

func minReplicas(shards [][]string) int {
	n := 0
	for i, s := range shards {
		if i == 0 || len(s) < n {
			n = len(s)
		}
	}
	return n
}

// Group is the consumer group of the sink for topic prefix prefix.
func Group(prefix string) string { return prefix + "sink" }

// kafkaOpts returns a Kafka client's options: the seed brokers, KafkaConnOpts, then opts.
func (c Config) kafkaOpts(opts ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, c.KafkaConnOpts...), opts...)
}
