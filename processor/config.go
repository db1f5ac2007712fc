package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Defaults of the processing semantics.
const (
	DefaultDedupWindow       = 48 * time.Hour
	DefaultMaxHeldPerVisitor = 1000
	DefaultMaxHeldAge        = 30 * 24 * time.Hour
)

// Internal topics of the processor (base names; the deployment prefix is added), both compacted and
// co-partitioned with signals.raw.
const (
	// TopicChangelog is the state changelog.
	TopicChangelog = "processor.changelog"
	// TopicAliases carries (anonymousId, userId) pairs to the userId's partition (see alias.go).
	TopicAliases = "processor.aliases"
)

// Config of a processor. Zero values take the documented defaults; New validates once.
type Config struct {
	// Brokers to bootstrap from (flag -brokers; default 127.0.0.1:9092).
	Brokers []string
	// KafkaConnOpts are added to every Kafka client: TLS and SASL (schemas/kafkaconn, flags -kafka-tls*, -kafka-sasl-*).
	KafkaConnOpts []kgo.Opt
	// Topics is the deployment's topic set (flags -topic-prefix, -partitions). Partitions must match signals.raw.
	Topics schemas.Config
	// Group is the consumer group (default <prefix>processor). Every instance of one deployment uses the same.
	Group string
	// TransactionalID must be unique per live instance and stable across its restarts, so a restarted instance
	// fences its predecessor at once (flag -transactional-id; default <prefix>processor-<hostname>-<state dir
	// hash>, see defaultTransactionalID).
	TransactionalID string
	// InstanceID makes this instance a static member of the group (flag -instance-id, env
	// SIGNALSTAGE_PROCESSOR_INSTANCE_ID; a StatefulSet passes the pod name; default "": dynamic). A static member
	// that restarts within SessionTimeout gets its partitions back without a rebalance, so a rolling restart or a
	// crash moves nothing and each instance restores only its own tail. It does not leave the group on shutdown:
	// its partitions wait for it up to SessionTimeout. Unique per live instance, like TransactionalID.
	InstanceID string
	// TransactionTimeout bounds how long a crashed instance's open transaction holds back the last stable offset
	// of what it wrote, which the next owner of its partitions waits for when it restores (flag
	// -transaction-timeout; default = SessionTimeout). At most SessionTimeout, so that by the time the group
	// moves a crashed instance's partitions its transaction has timed out too and the new owner waits at most
	// for the broker's abort scan (transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
	// default); a batch (processing and commit, restores excluded) must fit in it.
	TransactionTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent (crashed) instance before moving its partitions
	// (flag -session-timeout; default 10s; Kafka's default of 45s would stall a crashed instance's partitions;
	// the broker accepts group.min.session.timeout.ms (6 s) to group.max.session.timeout.ms).
	SessionTimeout time.Duration
	// StateDir holds one Pebble DB per input partition (flag -state-dir; required).
	StateDir string
	// DedupWindow is how long a signal id is remembered (flag -dedup-window; default 48h).
	DedupWindow time.Duration
	// MaxHeldPerVisitor bounds a visitor's cold storage (flag -max-held; default 1000); the oldest fall out.
	MaxHeldPerVisitor int
	// MaxHeldAge bounds how long a cold signal is held (flag -max-held-age; default 720h).
	MaxHeldAge time.Duration
	// MaxPollRecords bounds the input records of one transaction (flag -max-poll-records; default 5000).
	MaxPollRecords int
	// CacheBytes is the Pebble block cache shared by all partitions (flag -cache-mb; default DefaultCacheBytes).
	CacheBytes int64
	// MemTableBytes is each partition's Pebble memtable size (default 4 MiB).
	MemTableBytes uint64
	// VisitorCacheBytes bounds each partition's in-memory copy of its visitors' identity and held counter
	// (flag -visitor-cache-mb; default 16 MiB; negative disables). See visitorCache.
	VisitorCacheBytes int
	// SweepKeys is how many state keys a batch examines per partition for expiry (default 500).
	SweepKeys int
	// SweepInterval is the pause between two full expiry passes over a partition (default 1m).
	SweepInterval time.Duration
	// RestoreProgress is how often a state restore logs its progress (done/total offsets of the changelog
	// partition, rate, ETA; flag -restore-progress; default 5s, negative never).
	RestoreProgress time.Duration
	// AdminAddr serves /metrics and /healthz ("" disables; flag -admin-addr, default 127.0.0.1:9102 in main).
	AdminAddr string
	// Mapper applies mapping rules. nil (the default) runs a rules.Watcher on the signals.rules topic and maps
	// with the rules in effect; set DisableRules for no mapping at all.
	Mapper Mapper
	// DisableRules turns mapping rules off when Mapper is nil (tests that want unmapped signals only).
	DisableRules bool
	// AdminToken protects the rules HTTP API on AdminAddr (flag -admin-token, env SIGNALSTAGE_ADMIN_TOKEN); ""
	// disables the API (it is never served without a token).
	AdminToken string
	// SchemaRegistry is a Schema Registry's URL, Confluent's API (flag -schema-registry, env
	// SIGNALSTAGE_SCHEMA_REGISTRY; "" by default: none). The processor reads both single-object and registry-framed
	// records either way (a registry-framed one without a registry is dead-lettered, saying so); with a registry
	// it also registers the schemas it writes (signals.resolved, identities, signals.dlq, signals.erasures, as
	// <topic>-value) and writes them in the registry wire format. A registry that does not answer fails Run.
	SchemaRegistry string
	// Registry receives the metrics (nil: not registered).
	Registry prometheus.Registerer
	// Gatherer serves /metrics on AdminAddr (nil: prometheus.DefaultGatherer).
	Gatherer prometheus.Gatherer
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
	// Now is the clock (nil: time.Now); tests move it.
	Now func() time.Time
}

// ErrConfig is wrapped by every configuration error New returns.
var ErrConfig = errors.New("invalid processor config")

func (c Config) withDefaults() (Config, error) {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"127.0.0.1:9092"}
	}
	if c.Topics.Partitions <= 0 {
		c.Topics.Partitions = 6
	}
	if c.Group == "" {
		c.Group = c.Topics.Prefix + "processor"
	}
	if c.TransactionalID == "" && c.StateDir != "" {
		c.TransactionalID = defaultTransactionalID(c.Topics.Prefix, c.StateDir)
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = c.SessionTimeout
	}
	if c.MaxPollRecords <= 0 {
		c.MaxPollRecords = 5000
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = 4 << 20
	}
	if c.VisitorCacheBytes == 0 {
		c.VisitorCacheBytes = DefaultVisitorCacheBytes
	}
	if c.SweepKeys <= 0 {
		c.SweepKeys = 500
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.MaxHeldPerVisitor == 0 {
		c.MaxHeldPerVisitor = DefaultMaxHeldPerVisitor
	}
	if c.MaxHeldAge == 0 {
		c.MaxHeldAge = DefaultMaxHeldAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.StateDir == "":
		return c, fmt.Errorf("%w: -state-dir is required", ErrConfig)
	case c.DedupWindow < 0:
		return c, fmt.Errorf("%w: -dedup-window must be positive", ErrConfig)
	case c.MaxHeldPerVisitor < 0:
		return c, fmt.Errorf("%w: -max-held must be positive", ErrConfig)
	case c.MaxHeldAge < 0:
		return c, fmt.Errorf("%w: -max-held-age must be positive", ErrConfig)
	case c.TransactionTimeout > c.SessionTimeout:
		return c, fmt.Errorf("%w: -transaction-timeout %s is longer than -session-timeout %s: a crashed instance's "+
			"open transaction would hold its partitions' changelog back after they moved", ErrConfig,
			c.TransactionTimeout, c.SessionTimeout)
	case c.TransactionTimeout < time.Second:
		return c, fmt.Errorf("%w: -transaction-timeout must be at least 1s", ErrConfig)
	case c.Topics.Replication.Validate() != nil:
		return c, fmt.Errorf("%w: %w", ErrConfig, c.Topics.Replication.Validate())
	}
	return c, nil
}

// defaultTransactionalID is <prefix>processor-<hostname>-<8 hex digits of the absolute state dir's SHA-256>. An
// instance restarted on the same host with the same -state-dir keeps it, so it fences its predecessor's open
// transaction at once; two instances on one host differ by their state dirs, which must differ (Run locks the
// dir), so they never fence each other.
func defaultTransactionalID(prefix, stateDir string) string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(stateDir)
	if err != nil {
		dir = filepath.Clean(stateDir)
	}
	sum := sha256.Sum256([]byte(dir))
	return prefix + "processor-" + host + "-" + hex.EncodeToString(sum[:4])
}

// internalSpecs are the topics the processor adds to the deployment's table.
func (c Config) internalSpecs() []schemas.TopicSpec {
	return []schemas.TopicSpec{c.changelogSpec(), {
		Name:       c.Topics.Name(TopicAliases),
		Partitions: c.Topics.Partitions,
		Configs:    map[string]string{"cleanup.policy": "compact"},
	}}
}

func (c Config) changelogSpec() schemas.TopicSpec {
	return schemas.TopicSpec{
		Name:       c.Topics.Name(TopicChangelog),
		Partitions: c.Topics.Partitions,
		// Compaction only cleans closed segments: small, hourly segments keep what a fresh instance must read
		// on restore close to the live state instead of up to a 1 GiB active segment of history.
		Configs: map[string]string{"cleanup.policy": "compact", "segment.bytes": strconv.Itoa(64 << 20),
			"segment.ms": strconv.Itoa(int(time.Hour.Milliseconds())), "min.cleanable.dirty.ratio": "0.2"},
	}
}
