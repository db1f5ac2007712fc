// Command sink loads signals.resolved, identities and signals.dlq into ClickHouse.
//
//	sink [flags]           run the loader (applies pending migrations first)
//	sink migrate [flags]   apply pending migrations and exit
//	sink query [-param name=value]... NAME
//	                       run the analyst query sink/queries/NAME.sql, print JSON lines
//	sink replay [-from RFC3339] [flags]
//	                       rewind the sink's consumer group (stop the sinks first) so the next run loads again
//	                       everything from that time (default: all the topics retain); idempotent by design
//	sink forget -tenant T (-email E | -anonymous-id A | -user-id U) [-wait D]
//	                       erase a person: publish an erasure to signals.erasures and wait for a sink's report
//	sink tail -topic signals.resolved [-from-beginning] [-n N]
//	                       print a topic's records as JSON lines, decoded whatever schema version wrote them
//
// Every flag falls back to an environment variable, SIGNALSTAGE_SINK_<FLAG> else SIGNALSTAGE_<FLAG>; see sink/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/envflag"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
	"github.com/signalstage/signalstage/schemas/pprofhttp"
	"github.com/signalstage/signalstage/schemas/progress"
	"github.com/signalstage/signalstage/sink"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	verb := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		verb, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("sink "+verb, flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka seed brokers, comma separated")
	prefix := fs.String("topic-prefix", "", "prefix of every topic and of the consumer group")
	partitions := fs.Int("partitions", 6, "partitions of the co-partitioned topics")
	replication := fs.Int("replication-factor", 0, "replicas of each topic signalstage creates; 0: min(3, brokers in the cluster), -1: the broker's default")
	minInsync := fs.Int("min-insync-replicas", 0, "min.insync.replicas of each topic signalstage creates; 0: the replication factor less one, at least 1, -1: the broker's default")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	chAddr := fs.String("clickhouse-addr", "127.0.0.1:9000", "ClickHouse native address")
	chDB := fs.String("clickhouse-database", "signalstage", "ClickHouse database")
	chCluster := fs.String("clickhouse-cluster", "", "run on this ClickHouse cluster (its remote_servers name) with -clickhouse-shards; empty: one server at -clickhouse-addr")
	chShards := fs.String("clickhouse-shards", "", "the cluster's native addresses by shard in remote_servers order: replicas split by ',', shards by ';'")
	insertQuorum := fs.Int("insert-quorum", 2, "cluster: replicas of a shard that hold a block before its insert returns")
	chUser := fs.String("clickhouse-user", "default", "ClickHouse user")
	chPassword := kafkaconn.RegisterSecret(fs, "clickhouse-password", "SIGNALSTAGE_CLICKHOUSE_PASSWORD", "ClickHouse password")
	chTLS := kafkaconn.RegisterTLS(fs, "clickhouse-tls", "ClickHouse", false)
	var kafka kafkaconn.Flags
	kafka.Register(fs)
	schemaRegistry := fs.String("schema-registry", "", "Schema Registry URL (Confluent API): run and tail read registry-framed records with it (single-object ones either way)")
	instanceID := fs.String("instance-id", "", "static group membership: unique per instance, stable across restarts (a pod name); a restart within -session-timeout moves no partitions (default dynamic)")
	sessionTimeout := fs.Duration("session-timeout", 45*time.Second, "how long the group waits for a crashed sink before moving its partitions")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9103", "listen address of /metrics and /readyz; empty disables")
	flushRows := fs.Int("flush-rows", 50_000, "flush a table's batch at this many rows")
	flushBytes := fs.Int("flush-bytes", 32<<20, "flush a table's batch at about this many bytes")
	flushInterval := fs.Duration("flush-interval", time.Second, "flush a table's batch when its oldest row is this old")
	insertConcurrency := fs.Int("insert-concurrency", 2, "batches inserted at once")
	maxPartitions := fs.Int("max-partitions-per-insert", 100, "most monthly partitions one INSERT touches; keep at or below ClickHouse's max_partitions_per_insert_block")
	maxRefused := fs.Int("max-refused-rows", 100, "rows ClickHouse may refuse for their data (in a batch, or in a row), each then dead-lettered, before batches wait and are retried instead")
	retryMax := fs.Duration("retry-max", 10*time.Second, "longest wait between insert retries")
	consoleF := addConsoleFlags(fs)
	var params paramFlag
	fs.Var(&params, "param", "query: a parameter name=value (repeatable)")
	where := fs.String("where", "", "redrive: which dead_letters rows, a ClickHouse condition (default: retries = 0, those not redriven yet)")
	limit := fs.Int("limit", 10_000, "redrive: at most this many dead letters")
	dryRun := fs.Bool("dry-run", false, "redrive: list what would be sent, send nothing")
	progressEvery := fs.Duration("progress", progress.DefaultEvery, "redrive: how often progress (done/total, rate, ETA) is logged when stderr is not a terminal (a terminal gets a refreshing line); negative: only at the end")
	from := fs.String("from", "", "replay: load again the records written at or after this RFC 3339 time (default: from the start)")
	forgetTenant := fs.String("tenant", "", "forget: the person's tenant")
	forgetEmail := fs.String("email", "", "forget: the person's lead email")
	forgetAnon := fs.String("anonymous-id", "", "forget: the person's anonymous id")
	forgetUser := fs.String("user-id", "", "forget: the person's user id")
	forgetWait := fs.Duration("wait", 2*time.Minute, "forget: how long to wait for a sink to report the erasure; 0 publishes and returns")
	tailTopic := fs.String("topic", "", "tail: the topic, by base name ("+strings.Join(schemas.ViewTopics(), ", ")+")")
	tailFromBeginning := fs.Bool("from-beginning", false, "tail: start at the oldest record kept, not at the end")
	tailN := fs.Int("n", 0, "tail: stop after this many records; 0 follows until interrupted")
	// Every flag also reads SIGNALSTAGE_SINK_<FLAG>, else SIGNALSTAGE_<FLAG> (schemas/envflag); the legacy names
	// are those older releases documented.
	if err := envflag.Parse(fs, "sink", args, envflag.Legacy("brokers", "SIGNALSTAGE_KAFKA_BROKERS"),
		envflag.Legacy("tenant", "SIGNALSTAGE_FORGET_TENANT"), envflag.Legacy("email", "SIGNALSTAGE_FORGET_EMAIL"),
		envflag.Legacy("anonymous-id", "SIGNALSTAGE_FORGET_ANONYMOUS_ID"), envflag.Legacy("user-id", "SIGNALSTAGE_FORGET_USER_ID"),
		envflag.Legacy("wait", "SIGNALSTAGE_SINK_FORGET_WAIT"), envflag.Legacy("topic", "SIGNALSTAGE_TAIL_TOPIC"),
		envflag.Legacy("from-beginning", "SIGNALSTAGE_TAIL_FROM_BEGINNING"), envflag.Legacy("n", "SIGNALSTAGE_TAIL_N")); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "sink: %v\n", err)
		}
		return 2
	}
	if verb != "query" && fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "sink %s: stray argument %q (only query takes arguments after its flags)\n", verb, fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "sink: -log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	kafkaOpts, err := kafka.Opts()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sink: %v\n", err)
		return 2
	}
	chPass, err := chPassword.Value()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sink: %v\n", err)
		return 2
	}
	chTLSConfig, err := chTLS.Config()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sink: %v\n", err)
		return 2
	}

	var shards [][]string
	if *chShards != "" {
		if shards, err = sink.ParseShards(*chShards); err != nil {
			fmt.Fprintf(os.Stderr, "sink: %v\n", err)
			return 2
		}
	}

	cfg := sink.Config{
		Brokers: strings.Split(*brokers, ","),
		Topics: schemas.Config{Prefix: *prefix, Partitions: int32(*partitions),
			Replication: schemas.Replication{Factor: int16(*replication), MinInsync: int16(*minInsync)}},
		ClickHouseAddr:         *chAddr,
		Database:               *chDB,
		ClickHouseCluster:      *chCluster,
		ClickHouseShards:       shards,
		InsertQuorum:           *insertQuorum,
		ClickHouseUser:         *chUser,
		ClickHousePassword:     chPass,
		ClickHouseTLS:          chTLSConfig,
		KafkaConnOpts:          kafkaOpts,
		SchemaRegistry:         *schemaRegistry,
		InstanceID:             *instanceID,
		SessionTimeout:         *sessionTimeout,
		FlushRows:              *flushRows,
		FlushBytes:             *flushBytes,
		FlushInterval:          *flushInterval,
		RetryMax:               *retryMax,
		InsertConcurrency:      *insertConcurrency,
		MaxPartitionsPerInsert: *maxPartitions,
		MaxRefusedRows:         *maxRefused,
		Logger:                 log,
	}

	ctx, stop := signalContext(log)
	defer stop()
	switch verb {
	case "run":
		err = serve(ctx, log, cfg, *metricsAddr, consoleF)
	case "migrate":
		err = migrate(ctx, log, cfg)
	case "query":
		err = query(ctx, cfg, fs.Args(), params)
	case "replay":
		var at time.Time
		if *from != "" {
			if at, err = time.Parse(time.RFC3339, *from); err != nil {
				fmt.Fprintf(os.Stderr, "sink: -from: %v\n", err)
				return 2
			}
		}
		if err = sink.Replay(ctx, cfg, at); err == nil {
			log.Info("consumer group rewound; start the sink to load again", "group", sink.Group(cfg.Topics.Prefix), "from", *from)
		}
	case "redrive":
		var res sink.RedriveResult
		res, err = sink.Redrive(ctx, cfg, sink.RedriveConfig{Where: *where, Limit: *limit, DryRun: *dryRun,
			Progress: &progress.Options{Log: log, Terminal: progress.StderrTerminal(), Every: *progressEvery}}, func(r sink.Redriven) {
			what := "send"
			if r.Skipped != "" {
				what = "skip (" + r.Skipped + ")"
			}
			fmt.Printf("%s\t%s/%d@%d\tstage %s, retries %d: %s\n", what, r.OriginTopic, r.OriginPartition, r.OriginOffset,
				r.Stage, r.Retries, r.Reason)
		})
		if err == nil {
			log.Info("redrive done", "sent", res.Sent, "skipped", res.Skipped, "dry_run", *dryRun)
		}
	case "forget":
		var id string
		var rep *sink.ErasureReport
		id, rep, err = sink.Forget(ctx, cfg, sink.ForgetRequest{Tenant: *forgetTenant, Email: *forgetEmail,
			AnonymousID: *forgetAnon, UserID: *forgetUser, Wait: *forgetWait})
		switch {
		case err == nil && rep == nil:
			log.Info("erasure published; a sink applies it when it reads it", "request", id)
		case err == nil:
			log.Info("erased", "request", id, "tenant", rep.Tenant, "emails", rep.Emails, "visitor_ids", rep.Visitors)
			_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"request_id": id, "tenant": rep.Tenant,
				"erased_at": rep.ErasedAt, "emails": rep.Emails, "visitor_ids": rep.Visitors, "rows": rep.Rows})
		}
	case "tail":
		err = sink.Tail(ctx, cfg, sink.TailRequest{Topic: *tailTopic, FromBeginning: *tailFromBeginning, N: *tailN}, os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "sink: unknown command %q (want run, migrate, query, replay, redrive, forget or tail)\n", verb)
		return 2
	}
	if err != nil {
		log.Error("sink failed", "err", err)
		if errors.Is(err, sink.ErrConfig) {
			return 2
		}
		return 1
	}
	return 0
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one kills the process.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		log.Info("shutting down", "signal", s.String())
		cancel()
		<-ch
		log.Error("second signal, exiting now")
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

func serve(ctx context.Context, log *slog.Logger, cfg sink.Config, metricsAddr string, cf consoleFlags) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry = reg
	s, err := sink.New(cfg)
	if err != nil {
		return err
	}
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("-metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		// Profiles for loopback peers, or for a peer with the deployment's admin token (SIGNALSTAGE_ADMIN_TOKEN, as the processor's).
		mux.Handle(pprofhttp.Prefix, pprofhttp.Handler(os.Getenv("SIGNALSTAGE_ADMIN_TOKEN")))
		// 200 once migrated, in the group, and both Kafka and ClickHouse answer; 503 with the reason otherwise.
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			rctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := s.Ready(rctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ready\n"))
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}
	go s.WatchLag(ctx, 5*time.Second)
	waitConsole, err := startConsole(ctx, log, cfg, cf)
	if err != nil {
		return err
	}
	defer waitConsole()
	// Shutdown time runs from the signal to Run's return: the final flush and commit.
	var cancelledAt atomic.Int64
	defer context.AfterFunc(ctx, func() { cancelledAt.Store(time.Now().UnixNano()) })()
	err = s.Run(ctx)
	if at := cancelledAt.Load(); at != 0 {
		log.Info("stopped", "shutdown", time.Since(time.Unix(0, at)).String())
	}
	return err
}

func migrate(ctx context.Context, log *slog.Logger, cfg sink.Config) error {
	if cfg.ClickHouseCluster != "" {
		perNode, err := sink.MigrateClusterConfig(ctx, cfg)
		for addr, ms := range perNode {
			for _, m := range ms {
				log.Info("applied migration", "node", addr, "name", m.Name)
			}
		}
		if err != nil {
			return err
		}
		log.Info("migrations up to date on every node", "database", cfg.Database, "cluster", cfg.ClickHouseCluster)
		return nil
	}
	conn, err := sink.OpenClickHouse(cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := sink.Migrate(ctx, conn, cfg.Database)
	for _, m := range applied {
		log.Info("applied migration", "name", m.Name)
	}
	if err != nil {
		return err
	}
	log.Info("migrations up to date", "database", cfg.Database, "applied", len(applied))
	return nil
}

// paramFlag collects -param name=value flags.
type paramFlag map[string]string

func (p *paramFlag) String() string { return fmt.Sprint(map[string]string(*p)) }

func (p *paramFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	if *p == nil {
		*p = paramFlag{}
	}
	(*p)[name] = value
	return nil
}

func query(ctx context.Context, cfg sink.Config, args []string, params paramFlag) error {
	if len(args) != 1 {
		all, _ := sink.Queries()
		var names []string
		for _, q := range all {
			names = append(names, fmt.Sprintf("%s (%s)", q.Name, strings.Join(q.Params(), ", ")))
		}
		return fmt.Errorf("%w: want one query name: %s", sink.ErrParam, strings.Join(names, "; "))
	}
	q, err := sink.QueryByName(args[0])
	if err != nil {
		return err
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{cfg.ClickHouseAddr}, TLS: cfg.ClickHouseTLS,
		Auth: clickhouse.Auth{Database: cfg.Database, Username: cfg.ClickHouseUser, Password: cfg.ClickHousePassword}})
	if err != nil {
		return fmt.Errorf("opening clickhouse: %w", err)
	}
	defer conn.Close()
	res, err := q.Run(ctx, conn, params)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	for _, row := range res.Maps() {
		if err := enc.Encode(row); err != nil {
			return err
		}
	}
	return nil
}
