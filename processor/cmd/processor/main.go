// Command processor runs the signalstage stream processor (see package processor). `processor replay` rewinds
// the processor's consumer group on signals.raw to a time or an offset so the next run processes that range again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/processor"
	"github.com/signalstage/signalstage/processor/rules"
	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/envflag"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
	"github.com/signalstage/signalstage/schemas/progress"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "replay" {
		os.Exit(replay(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "grow" {
		os.Exit(grow(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "rules" {
		os.Exit(rulesCmd(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:]))
}

// common are the flags every stage shares.
type common struct {
	brokers, prefix, level string
	partitions             int
	replication, minInsync int
	kafka                  kafkaconn.Flags
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.brokers, "brokers", "127.0.0.1:9092", "Kafka seed brokers, comma separated")
	fs.StringVar(&c.prefix, "topic-prefix", "", "topic name prefix")
	fs.IntVar(&c.partitions, "partitions", 6, "partitions of signals.raw and everything co-partitioned with it")
	fs.IntVar(&c.replication, "replication-factor", 0, "replicas of each topic signalstage creates; 0: min(3, brokers in the cluster), -1: the broker's default")
	fs.IntVar(&c.minInsync, "min-insync-replicas", 0, "min.insync.replicas of each topic signalstage creates; 0: the replication factor less one, at least 1, -1: the broker's default")
	fs.StringVar(&c.level, "log-level", "info", "debug, info, warn or error")
	c.kafka.Register(fs)
}

// parse parses args into fs: the command line, then for every flag not given there SIGNALSTAGE_PROCESSOR_<FLAG>,
// else SIGNALSTAGE_<FLAG> (schemas/envflag). A value the environment gets wrong exits 2 naming its variable.
func parse(fs *flag.FlagSet, args []string) {
	if err := envflag.Parse(fs, "processor", args, envflag.Legacy("brokers", "SIGNALSTAGE_KAFKA_BROKERS")); err != nil {
		fmt.Fprintln(os.Stderr, "processor:", err)
		os.Exit(2)
	}
}

// kafkaOpts returns the Kafka security options (schemas/kafkaconn); a bad setting exits 2 naming its flag.
func (c *common) kafkaOpts() []kgo.Opt {
	opts, err := c.kafka.Opts()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return opts
}

func (c *common) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(log)
	return log, nil
}

func (c *common) topics() schemas.Config {
	return schemas.Config{Prefix: c.prefix, Partitions: int32(c.partitions),
		Replication: schemas.Replication{Factor: int16(c.replication), MinInsync: int16(c.minInsync)}}
}

func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills the process
	}()
	return ctx, stop
}

func run(args []string) int {
	var c common
	var cfg processor.Config
	fs := flag.NewFlagSet("processor", flag.ExitOnError)
	c.register(fs)
	fs.StringVar(&cfg.StateDir, "state-dir", "./processor-state", "directory of the per-partition Pebble state")
	fs.StringVar(&cfg.SchemaRegistry, "schema-registry", "", "Schema Registry URL (Confluent API): register the schemas written and write the registry wire format; both formats are read either way")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:9102", "admin listener: /metrics, /healthz, /readyz, the rules API")
	adminToken := kafkaconn.RegisterSecret(fs, "admin-token", "SIGNALSTAGE_ADMIN_TOKEN", "bearer token of the rules HTTP API on -admin-addr; none disables the API")
	fs.BoolVar(&cfg.DisableRules, "disable-rules", false, "do not read signals.rules: every signal comes out unmapped")
	fs.StringVar(&cfg.Group, "group", "", "consumer group (default <prefix>processor)")
	fs.StringVar(&cfg.TransactionalID, "transactional-id", "", "unique per instance, stable across its restarts (default <prefix>processor-<hostname>-<state dir hash>)")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", processor.DefaultDedupWindow, "how long a signal id is remembered")
	fs.IntVar(&cfg.MaxHeldPerVisitor, "max-held", processor.DefaultMaxHeldPerVisitor, "cold signals held per visitor")
	fs.DurationVar(&cfg.MaxHeldAge, "max-held-age", processor.DefaultMaxHeldAge, "how long a cold signal is held")
	fs.IntVar(&cfg.MaxPollRecords, "max-poll-records", 5000, "input records per transaction")
	fs.DurationVar(&cfg.RestoreProgress, "restore-progress", progress.DefaultEvery, "how often a state restore logs its progress (done/total changelog offsets, rate, ETA); negative never")
	cacheMB := fs.Int64("cache-mb", processor.DefaultCacheBytes>>20, "Pebble block cache shared by every partition: data, index and filter blocks (the memory budget is in processor/README.md)")
	visitorCacheMB := fs.Int("visitor-cache-mb", processor.DefaultVisitorCacheBytes>>20, "per partition: memory for the identities and held counters of recent visitors (0 disables)")
	fs.StringVar(&cfg.InstanceID, "instance-id", "", "static group membership: unique per instance, stable across restarts (a pod name); a restart within -session-timeout moves no partitions (default dynamic)")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 10*time.Second, "how long the group waits for a crashed instance")
	fs.DurationVar(&cfg.TransactionTimeout, "transaction-timeout", 0, "Kafka transaction timeout, at most -session-timeout (default -session-timeout)")
	parse(fs, args)
	if fs.NArg() > 0 {
		// `processor nonsense-verb -h` used to start a processor against the default broker.
		fmt.Fprintf(os.Stderr, "processor: unknown command or stray argument %q (commands: grow, replay, rules; with flags only, it runs the processor)\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	cfg.VisitorCacheBytes = *visitorCacheMB << 20
	if *cacheMB <= 0 {
		fmt.Fprintln(os.Stderr, "processor: -cache-mb must be positive")
		return 2
	}
	cfg.CacheBytes = *cacheMB << 20
	if *visitorCacheMB <= 0 {
		cfg.VisitorCacheBytes = -1
	}
	log, err := c.logger()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg.Brokers, cfg.KafkaConnOpts = strings.Split(c.brokers, ","), c.kafkaOpts()
	if cfg.AdminToken, err = adminToken.Value(); err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	cfg.Topics = c.topics()
	cfg.Logger = log
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registry, cfg.Gatherer = reg, reg

	p, err := processor.New(cfg)
	if err != nil {
		log.Error("invalid configuration", "err", err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	stopping := make(chan time.Time, 1)
	go func() {
		<-ctx.Done()
		stopping <- time.Now()
	}()
	err = p.Run(ctx)
	select {
	case at := <-stopping:
		log.Info("stopped", "shutdown_took", time.Since(at).String())
	default:
		log.Info("stopped")
	}
	if err != nil {
		log.Error("processor failed", "err", err)
		return 1
	}
	return 0
}

// rulesCmd is `processor rules [common flags] <verb> ...` (see processor/rules: Command).
func rulesCmd(args []string) int {
	var c common
	fs := flag.NewFlagSet("processor rules", flag.ExitOnError)
	c.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: processor rules [-brokers B] [-topic-prefix P] <verb> ...\n\n"+rules.Usage)
		fs.PrintDefaults()
	}
	parse(fs, args)
	if _, err := c.logger(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	brokers := strings.Split(c.brokers, ",")
	// The rules topic must exist with its compacted config before the first apply (auto-creation would not
	// compact it).
	if fs.NArg() > 0 && fs.Arg(0) != "suggest" {
		if err := ensureTopics(ctx, brokers, c.kafkaOpts(), c.topics()); err != nil {
			fmt.Fprintln(os.Stderr, "processor rules:", err)
			return 1
		}
	}
	err := rules.Command(ctx, fs.Args(), os.Stdin, os.Stdout, rules.CommandConfig{
		Brokers: brokers, ClientOpts: c.kafkaOpts(), Topic: c.topics().Name(schemas.TopicRules),
		Env: func(fs *flag.FlagSet) error { return envflag.Apply(fs, "processor") }})
	switch {
	case err == nil:
		return 0
	case errors.Is(err, rules.ErrUsage):
		fmt.Fprintln(os.Stderr, err)
		return 2
	default:
		fmt.Fprintln(os.Stderr, "processor rules:", err)
		return 1
	}
}

func grow(args []string) int {
	var c common
	var from string
	var follow bool
	fs := flag.NewFlagSet("processor grow", flag.ExitOnError)
	c.register(fs)
	fs.StringVar(&from, "from-prefix", "", "topic prefix of the deployment to move from (default \"\"; -topic-prefix, which must differ, and -partitions are the new set)")
	fs.BoolVar(&follow, "follow", false, "keep copying what arrives on the old signals.raw until interrupted")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: processor grow -from-prefix OLD -topic-prefix NEW -partitions N [-follow] [flags]\n\n"+
			"Creates the topic set NEW with N partitions and copies OLD's mapping rules, erasures and signals.raw into\n"+
			"it, exactly once, each record to its key's partition in its old order; a later run goes on where the last\n"+
			"one stopped. Processors and sinks started on NEW rebuild the state from the copy (README, Running at scale).")
		fs.PrintDefaults()
	}
	_ = fs.Parse(args)
	log, err := c.logger()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signalContext()
	defer stop()
	res, err := processor.Grow(ctx, processor.GrowConfig{Brokers: strings.Split(c.brokers, ","),
		From: schemas.Config{Prefix: from}, To: c.topics(), Follow: follow, KafkaConnOpts: c.kafkaOpts(), Logger: log})
	if err != nil {
		log.Error("grow failed", "err", err)
		if errors.Is(err, processor.ErrGrowConfig) {
			return 2
		}
		return 1
	}
	fmt.Printf("copied %d raw events, %d rule records, %d erasures\n", res.Raw, res.Rules, res.Erasures)
	return 0
}

func replay(args []string) int {
	var c common
	var rc processor.ReplayConfig
	var from string
	fs := flag.NewFlagSet("processor replay", flag.ExitOnError)
	c.register(fs)
	fs.StringVar(&rc.Group, "group", "", "consumer group (default <prefix>processor)")
	fs.StringVar(&from, "from", "", "where to rewind signals.raw: an RFC 3339 time, or an offset applied to every partition")
	fs.StringVar(&rc.PartitionsList, "only-partitions", "", "comma-separated partitions to rewind (default all)")
	fs.BoolVar(&rc.DryRun, "dry-run", false, "print the new offsets without committing them")
	follow := fs.Bool("follow", false, "after rewinding, report the group's progress through the range (done/total offsets, rate, ETA) until it reached the end offsets of now; start the processors meanwhile")
	progressEvery := fs.Duration("progress", progress.DefaultEvery, "with -follow: how often progress is logged when stderr is not a terminal (a terminal gets a refreshing line)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: processor replay -from <RFC3339 time | offset> [flags]\n\n"+
			"Rewinds the processor's group on signals.raw; stop every processor instance first (the group must be\n"+
			"empty). The next run processes the range again: same signal ids, each emitted again one version up,\n"+
			"nothing dropped as a duplicate (see processor/README.md).")
		fs.PrintDefaults()
	}
	parse(fs, args)
	log, err := c.logger()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if from == "" {
		fs.Usage()
		return 2
	}
	if t, err := time.Parse(time.RFC3339, from); err == nil {
		rc.FromTime = t
	} else if o, err := strconv.ParseInt(from, 10, 64); err == nil && o >= 0 {
		rc.FromOffset = o
		rc.UseOffset = true
	} else {
		fmt.Fprintln(os.Stderr, "-from: want an RFC 3339 time or a non-negative offset")
		return 2
	}
	rc.Brokers, rc.KafkaConnOpts = strings.Split(c.brokers, ","), c.kafkaOpts()
	rc.Topics = c.topics()
	ctx, stop := signalContext()
	defer stop()
	offs, err := processor.Replay(ctx, rc)
	if err != nil {
		log.Error("replay failed", "err", err)
		return 1
	}
	for part, o := range offs {
		fmt.Printf("partition %d -> offset %d\n", part, o)
	}
	if *follow && !rc.DryRun {
		err := processor.FollowReplay(ctx, rc, offs, progress.Options{Log: log, Terminal: progress.StderrTerminal(), Every: *progressEvery})
		switch {
		case ctx.Err() != nil:
			log.Info("stopped following the replay; the processors go on")
		case err != nil:
			log.Error("following the replay failed", "err", err)
			return 1
		}
	}
	return 0
}

func ensureTopics(ctx context.Context, brokers []string, conn []kgo.Opt, topics schemas.Config) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, conn...)...)
	if err != nil {
		return fmt.Errorf("creating admin client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := topics.Ensure(ctx, kadm.NewClient(cl)); err != nil {
		return fmt.Errorf("ensuring topics: %w", err)
	}
	return nil
}
