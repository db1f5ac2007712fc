package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Config of the edge. Zero values take the documented defaults; New validates once and names the flag of a bad
// value in its error.
type Config struct {
	// Addr is the HTTP listen address (-addr, default 127.0.0.1:8080). Ignored when Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr (tests pass 127.0.0.1:0 listeners).
	Listener net.Listener
	// AdminAddr is the operator listener: /metrics (per-tenant labels), /healthz and /readyz (-admin-addr, env
	// SIGNALSTAGE_INGEST_ADMIN_ADDR; 127.0.0.1:9101 in main). With an admin listener the public one does not
	// serve /metrics; "" (and no AdminListener) serves /metrics on the public listener, as before.
	AdminAddr string
	// AdminListener, when set, is served instead of listening on AdminAddr.
	AdminListener net.Listener
	// DrainGrace is how long ingest keeps serving after the stop signal with /readyz answering 503, so that load
	// balancers take it out of rotation before its listener closes (-drain-grace, env SIGNALSTAGE_INGEST_DRAIN_GRACE;
	// 5s in main; 0 closes at once). ShutdownTimeout then bounds draining what is in flight.
	DrainGrace time.Duration
	// Brokers are the Kafka seed brokers (-brokers, default 127.0.0.1:9092).
	Brokers []string
	// TopicPrefix is prepended to every topic name (-topic-prefix, default "").
	TopicPrefix string
	// Partitions of signals.raw and its co-partitioned topics when Run creates them (-partitions, default 6).
	Partitions int32
	// Replication of the topics Run creates (-replication-factor, -min-insync-replicas; default min(3, brokers)
	// replicas and one less in sync: see schemas.Replication).
	Replication schemas.Replication

	// KeysFile is the JSON key registry (-keys, env SIGNALSTAGE_KEYS_FILE). Required.
	KeysFile string
	// KeysPollInterval is how often the registry file is checked for changes (-keys-poll, default 2s); SIGHUP
	// reloads it at once.
	KeysPollInterval time.Duration

	// MaxEventBytes bounds one event (-max-event-bytes, default 32 KiB). A single-event request beyond it gets
	// 413; an oversized event inside a batch is rejected and dead-lettered.
	MaxEventBytes int
	// MaxRequestBytes bounds a request body, after gzip decompression too (-max-request-bytes, default 500 KiB).
	MaxRequestBytes int
	// MaxWebhookRequestBytes bounds a body on the webhook route, after decompression too
	// (-max-webhook-request-bytes, env SIGNALSTAGE_MAX_WEBHOOK_REQUEST_BYTES, default 16 MiB, at most a quarter
	// of MaxRequestMemory, never under MaxRequestBytes). The Webhooks (Actions) destination batches up to 4000
	// events (1000 by default): about 4 MB of ordinary 1 KB events, and 16 MiB leaves 4 KiB per event. A body is
	// reserved from the key's memory quota as it arrives, so the size costs nothing until it is sent.
	MaxWebhookRequestBytes int
	// MaxEventsPerRequest bounds the events of one request (-max-events-per-request, default 10000; Segment
	// batches up to 4000): 500 KB of "{}," would otherwise be 170 000 records in memory. 413 beyond.
	MaxEventsPerRequest int

	// ProduceTimeout is how long a request waits for Kafka to acknowledge its records before it answers 503
	// (-produce-timeout, default 8s: under Segment's 10 s client timeout).
	ProduceTimeout time.Duration
	// RetryAfter is the Retry-After sent with 503 (-retry-after, default 5s).
	RetryAfter time.Duration
	// MaxBufferedRecords and MaxBufferedBytes bound the producer's memory (-max-buffered-records, default
	// 100000; -max-buffered-bytes, default 128 MiB). When either is reached requests get 503 at once.
	MaxBufferedRecords int
	MaxBufferedBytes   int
	// MaxInFlight bounds the requests being served at once (-max-in-flight, default 1024); beyond it requests get
	// 503 at once. With the producer bounds it caps memory: about MaxInFlight × 2 × MaxRequestBytes for bodies and
	// encoded records, plus MaxBufferedBytes.
	MaxInFlight int
	// MaxRequestMemory bounds the memory all requests being served may hold at once (-max-request-memory,
	// default 256 MiB): bodies, merged payloads and encoded records, estimated per request. A request that
	// does not fit now gets 503 (Segment retries it); one that could never fit gets 413.
	MaxRequestMemory int64
	// MaxInFlightPerKey bounds the requests of one key being served at once (-max-in-flight-per-key, env
	// SIGNALSTAGE_MAX_IN_FLIGHT_PER_KEY, default a quarter of MaxInFlight); beyond it that key gets 503 at once,
	// before its body is read, and the other keys keep their share.
	MaxInFlightPerKey int
	// MaxRequestMemoryPerKey bounds the request memory one key's requests may hold together
	// (-max-request-memory-per-key, env SIGNALSTAGE_MAX_REQUEST_MEMORY_PER_KEY, default a quarter of
	// MaxRequestMemory, raised to 4 × MaxWebhookRequestBytes when that fits in MaxRequestMemory). Beyond it that
	// key gets 503; a request that alone needs more gets 413. Requests whose key is in the body (analytics.js's
	// writeKey) share one such quota until it is known.
	MaxRequestMemoryPerKey int64
	// MinBodyRate is the slowest a body may arrive, in bytes per second, once BodyReadGrace has passed
	// (-min-body-rate, env SIGNALSTAGE_MIN_BODY_RATE, default 16 KiB/s; negative here, 0 on the flag, turns it
	// off): a slower body gets 503
	// and the connection is closed, so idle sockets do not hold a key's quota for the whole ReadTimeout.
	MinBodyRate int
	// BodyReadGrace is the time a body has before MinBodyRate applies (-body-read-grace, env
	// SIGNALSTAGE_BODY_READ_GRACE, default 5s). ReadTimeout still bounds the whole request.
	BodyReadGrace time.Duration
	// Linger is the producer's linger (-linger, default 0: batching comes from concurrent requests).
	Linger time.Duration

	// ReplicaID names this replica in the shared usage topic (-replica-id, default the host name). Keep it stable
	// across restarts (a StatefulSet pod name) so a restarted replica resumes its own count.
	ReplicaID string
	// UsageInterval is how often this replica publishes its per-key monthly counts (-usage-interval, default 1s).
	UsageInterval time.Duration

	// HTTP server hardening (defaults: header 5s, read 15s, write 15s, idle 120s, 16 KiB of headers).
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// ShutdownTimeout bounds draining in-flight requests and flushing the producer (-shutdown-timeout, default 20s).
	ShutdownTimeout time.Duration

	// Registry receives the metrics (default: a new registry, served on /metrics either way).
	Registry *prometheus.Registry
	// Logger for structured logs (default slog.Default()).
	Logger *slog.Logger
	// SchemaRegistry is a Schema Registry's URL, Confluent's API (-schema-registry, env
	// SIGNALSTAGE_SCHEMA_REGISTRY; default "": none). With it, Run registers raw_event and dead_letter under
	// <topic>-value of signals.raw and signals.dlq and writes their records in the registry wire format (magic 0,
	// schema id, Avro body) instead of single-object encoding; a registry that does not answer fails Run.
	SchemaRegistry string
	// KafkaOpts are appended to the producer's options (tests use them for fault injection).
	KafkaOpts []kgo.Opt
	// KafkaConnOpts are how every Kafka client of the edge connects: TLS and SASL (kafkaconn.Flags.Opts; the
	// -kafka-tls* and -kafka-sasl-* flags). Empty: plaintext.
	KafkaConnOpts []kgo.Opt
	// Now returns the current time (default time.Now); tests move the month.
	Now func() time.Time
}

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:8080"
	DefaultMaxEventBytes   = 32 << 10
	DefaultMaxRequestBytes = 500 << 10
	DefaultProduceTimeout  = 8 * time.Second
)

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"127.0.0.1:9092"}
	}
	if c.Partitions == 0 {
		c.Partitions = 6
	}
	set(&c.KeysPollInterval, 2*time.Second)
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxRequestMemory == 0 {
		c.MaxRequestMemory = 256 << 20
	}
	if c.MaxWebhookRequestBytes == 0 {
		c.MaxWebhookRequestBytes = max(c.MaxRequestBytes, int(min(16<<20, c.MaxRequestMemory/4)))
	}
	if c.MaxRequestMemoryPerKey == 0 {
		c.MaxRequestMemoryPerKey = max(c.MaxRequestMemory/4, min(c.MaxRequestMemory, 4*int64(c.MaxWebhookRequestBytes)))
	}
	if c.MinBodyRate == 0 {
		c.MinBodyRate = 16 << 10
	}
	set(&c.BodyReadGrace, 5*time.Second)
	if c.MaxEventsPerRequest == 0 {
		c.MaxEventsPerRequest = 10_000
	}
	set(&c.ProduceTimeout, DefaultProduceTimeout)
	set(&c.RetryAfter, 5*time.Second)
	if c.MaxBufferedRecords == 0 {
		c.MaxBufferedRecords = 100_000
	}
	if c.MaxBufferedBytes == 0 {
		c.MaxBufferedBytes = 128 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.MaxInFlightPerKey == 0 {
		c.MaxInFlightPerKey = max(1, c.MaxInFlight/4)
	}
	if c.ReplicaID == "" {
		c.ReplicaID, _ = os.Hostname()
		if c.ReplicaID == "" {
			c.ReplicaID = "ingest"
		}
	}
	set(&c.UsageInterval, time.Second)
	set(&c.ReadHeaderTimeout, 5*time.Second)
	set(&c.ReadTimeout, 15*time.Second)
	set(&c.WriteTimeout, 15*time.Second)
	set(&c.IdleTimeout, 120*time.Second)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	set(&c.ShutdownTimeout, 20*time.Second)
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	bad := func(flag string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("-%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if c.Partitions < 1 {
		bad("partitions", "must be at least 1, got %d", c.Partitions)
	}
	if err := c.Replication.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.KeysFile == "" {
		// No default: a default pointing at the repository's development keys would let a deployment that
		// forgot the flag accept keys anyone can read.
		bad("keys", "is required: the JSON key registry file (for local development: testenv/dev-keys.json)")
	}
	if c.DrainGrace < 0 {
		bad("drain-grace", "must not be negative")
	}
	if c.KeysPollInterval < 0 {
		bad("keys-poll", "must not be negative")
	}
	if c.MaxEventBytes < 64 {
		bad("max-event-bytes", "must be at least 64, got %d", c.MaxEventBytes)
	}
	if c.MaxRequestBytes < c.MaxEventBytes {
		bad("max-request-bytes", "must be at least -max-event-bytes (%d), got %d", c.MaxEventBytes, c.MaxRequestBytes)
	}
	if c.MaxEventsPerRequest < 1 {
		bad("max-events-per-request", "must be at least 1, got %d", c.MaxEventsPerRequest)
	}
	if c.ProduceTimeout < 0 {
		bad("produce-timeout", "must be positive")
	}
	if c.RetryAfter < time.Second {
		bad("retry-after", "must be at least 1s, got %s", c.RetryAfter)
	}
	if c.MaxBufferedRecords < 1 {
		bad("max-buffered-records", "must be at least 1")
	}
	if c.MaxBufferedBytes < c.MaxRequestBytes {
		bad("max-buffered-bytes", "must be at least -max-request-bytes (%d), got %d", c.MaxRequestBytes, c.MaxBufferedBytes)
	}
	if c.MaxRequestMemory < 4*int64(c.MaxRequestBytes) {
		bad("max-request-memory", "must be at least 4 × -max-request-bytes (%d), got %d", 4*c.MaxRequestBytes, c.MaxRequestMemory)
	}
	if c.MaxInFlight < 1 {
		bad("max-in-flight", "must be at least 1, got %d", c.MaxInFlight)
	}
	if c.MaxWebhookRequestBytes < c.MaxRequestBytes {
		bad("max-webhook-request-bytes", "must be at least -max-request-bytes (%d), got %d", c.MaxRequestBytes, c.MaxWebhookRequestBytes)
	}
	if c.MaxInFlightPerKey < 1 || c.MaxInFlightPerKey > c.MaxInFlight {
		bad("max-in-flight-per-key", "must be between 1 and -max-in-flight (%d), got %d", c.MaxInFlight, c.MaxInFlightPerKey)
	}
	if c.MaxRequestMemoryPerKey > c.MaxRequestMemory || c.MaxRequestMemoryPerKey < 3*int64(c.MaxWebhookRequestBytes) {
		bad("max-request-memory-per-key", "must be between 3 × -max-webhook-request-bytes (%d) and -max-request-memory (%d), got %d",
			3*int64(c.MaxWebhookRequestBytes), c.MaxRequestMemory, c.MaxRequestMemoryPerKey)
	}
	if c.BodyReadGrace < 0 {
		bad("body-read-grace", "must not be negative, got %s", c.BodyReadGrace)
	}
	if strings.Contains(c.ReplicaID, "|") {
		bad("replica-id", "must not contain '|' (it is part of the usage topic's keys), got %q", c.ReplicaID)
	}
	if c.UsageInterval < 10*time.Millisecond {
		bad("usage-interval", "must be at least 10ms, got %s", c.UsageInterval)
	}
	return errors.Join(errs...)
}
