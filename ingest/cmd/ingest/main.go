// Command ingest runs the signalstage HTTP edge (see package ingest). `ingest keys hash` prints the hash of an
// API secret for the key registry file.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/signalstage/signalstage/ingest"
	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/envflag"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "keys" {
		os.Exit(keysCmd(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	var cfg ingest.Config
	var brokers, level string
	var partitions, replication, minInsync int
	var kafka kafkaconn.Flags
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	kafka.Register(fs)
	fs.StringVar(&cfg.Addr, "addr", ingest.DefaultAddr, "HTTP listen address")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:9101", "operator listener: /metrics, /healthz, /readyz; keep it off the public network (empty serves /metrics on -addr, as before)")
	fs.DurationVar(&cfg.DrainGrace, "drain-grace", 5*time.Second, "after SIGTERM, keep serving this long with /readyz answering 503 before closing the listener")
	fs.StringVar(&brokers, "brokers", "127.0.0.1:9092", "Kafka seed brokers, comma separated")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", "", "topic name prefix")
	fs.IntVar(&partitions, "partitions", 6, "partitions of signals.raw when created")
	fs.IntVar(&replication, "replication-factor", 0, "replicas of each topic signalstage creates; 0: min(3, brokers in the cluster), -1: the broker's default")
	fs.IntVar(&minInsync, "min-insync-replicas", 0, "min.insync.replicas of each topic signalstage creates; 0: the replication factor less one, at least 1, -1: the broker's default")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.SchemaRegistry, "schema-registry", "", "Schema Registry URL (Confluent API): register the schemas and write the registry wire format instead of single-object encoding")
	fs.StringVar(&cfg.KeysFile, "keys", "", "key registry JSON file, required (for local development: testenv/dev-keys.json); reloaded on SIGHUP and on change")
	fs.DurationVar(&cfg.KeysPollInterval, "keys-poll", 2*time.Second, "how often the key file is checked for changes")
	fs.IntVar(&cfg.MaxEventBytes, "max-event-bytes", ingest.DefaultMaxEventBytes, "largest event accepted")
	fs.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", ingest.DefaultMaxRequestBytes, "largest request body, after decompression")
	fs.IntVar(&cfg.MaxWebhookRequestBytes, "max-webhook-request-bytes", 0, "largest body on the webhook route, after decompression (default 16 MiB: Webhooks (Actions) batches of up to 4000 events)")
	fs.IntVar(&cfg.MaxInFlightPerKey, "max-in-flight-per-key", 0, "requests of one key served at once, 503 beyond (default -max-in-flight / 4)")
	fs.Int64Var(&cfg.MaxRequestMemoryPerKey, "max-request-memory-per-key", 0, "request memory one key's requests may hold, 503 beyond (default -max-request-memory / 4, at least 4 × -max-webhook-request-bytes when that fits)")
	fs.IntVar(&cfg.MinBodyRate, "min-body-rate", 16<<10, "slowest body accepted after -body-read-grace, bytes/s; 0 turns it off")
	fs.DurationVar(&cfg.BodyReadGrace, "body-read-grace", 5*time.Second, "time a body has before -min-body-rate applies")
	fs.IntVar(&cfg.MaxEventsPerRequest, "max-events-per-request", 10_000, "most events in one request (413 beyond)")
	fs.DurationVar(&cfg.ProduceTimeout, "produce-timeout", ingest.DefaultProduceTimeout, "wait for Kafka acks before answering 503")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", 5*time.Second, "Retry-After of 503 answers")
	fs.IntVar(&cfg.MaxBufferedRecords, "max-buffered-records", 100_000, "producer buffer bound in records (503 beyond)")
	fs.IntVar(&cfg.MaxBufferedBytes, "max-buffered-bytes", 128<<20, "producer buffer bound in bytes (503 beyond)")
	fs.IntVar(&cfg.MaxInFlight, "max-in-flight", 1024, "requests served at once (503 beyond)")
	fs.Int64Var(&cfg.MaxRequestMemory, "max-request-memory", 256<<20, "memory all requests being served may hold (503 beyond)")
	fs.DurationVar(&cfg.Linger, "linger", 0, "producer linger")
	fs.StringVar(&cfg.ReplicaID, "replica-id", "", "stable name of this replica in the usage topic (default host name)")
	fs.DurationVar(&cfg.UsageInterval, "usage-interval", time.Second, "how often monthly counts are published")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "bound on draining requests and flushing")
	// Every flag also reads SIGNALSTAGE_INGEST_<FLAG>, else SIGNALSTAGE_<FLAG> (schemas/envflag).
	if err := envflag.Parse(fs, "ingest", os.Args[1:], envflag.Legacy("brokers", "SIGNALSTAGE_KAFKA_BROKERS"),
		envflag.Legacy("keys", "SIGNALSTAGE_KEYS_FILE")); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ingest: unknown command or stray argument %q (commands: keys; with flags only, it runs the edge)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	cfg.Brokers = strings.Split(brokers, ",")
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = -1 // the flag's 0 turns the minimum off; Config's 0 is the default
	}
	cfg.Partitions = int32(partitions)
	cfg.Replication = schemas.Replication{Factor: int16(replication), MinInsync: int16(minInsync)}

	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		fmt.Fprintf(os.Stderr, "-log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	cfg.Logger = log

	var err error
	if cfg.KafkaConnOpts, err = kafka.Opts(); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	srv, err := ingest.New(cfg)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	if err := srv.Run(ctx); err != nil {
		log.Error("ingest failed", "err", err)
		return 1
	}
	return 0
}

// keysCmd implements `ingest keys hash [secret]`; without an argument the secret is read from stdin so that it
// does not land in the shell history.
func keysCmd(args []string) int {
	if len(args) == 0 || args[0] != "hash" {
		fmt.Fprintln(os.Stderr, "usage: ingest keys hash [secret]   (reads the secret from stdin when omitted)")
		return 2
	}
	secret := ""
	if len(args) > 1 {
		secret = args[1]
	} else {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && line == "" {
			fmt.Fprintln(os.Stderr, "reading secret from stdin:", err)
			return 1
		}
		secret = strings.TrimRight(line, "\r\n")
	}
	if secret == "" {
		fmt.Fprintln(os.Stderr, "empty secret")
		return 2
	}
	fmt.Println(ingest.HashSecret(secret))
	return 0
}
