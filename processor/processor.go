// Package processor is signalstage's stateful stream processor: it reads signals.raw and identities, removes
// duplicate deliveries, resolves visitors to leads, holds and rehydrates cold signals, and writes
// signals.resolved, identities and signals.dlq, exactly once: outputs, state changelog and input offsets commit
// in one Kafka transaction per polled batch.
package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/processor/rules"
	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
	"github.com/signalstage/signalstage/schemas/pprofhttp"
)

// Processor runs the processing loop of one instance. Create it with New.
type Processor struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	core    *Core
	cache   *pebble.Cache
	raw     string
	idents  string
	resolve string
	dlq     string
	clog    string
	aliases string

	// ownMu guards epochs. The group's revoke/lost callbacks run on kgo's goroutine; they only bump the epoch of
	// what was taken away, and the processing loop (the only user of the stores) notices before its next batch.
	ownMu  sync.Mutex
	epochs map[int32]uint64

	// assigned are the input partitions the group gave this instance (under ownMu), joined whether the current
	// session has had an assignment, restored whether every assigned partition's store was caught up since the
	// last change of the assignment (assignGen): what /readyz reports, with brokerOK.
	assigned  map[int32]bool
	joined    bool
	restored  bool
	assignGen uint64
	brokerOK  atomic.Bool
	inSession atomic.Bool

	// stop is Run's context: a graceful stop. Restores end when it is done; a batch under way still commits
	// (within shutdownGrace) so it leaves no transaction open.
	stop context.Context

	stores  map[int32]*storeState // processing loop only
	addr    chan string           // admin address once listening
	watcher *rules.Watcher        // nil when Config.Mapper is given or rules are disabled

	erasures *erasureLog // signals.erasures, followed by Run (erasures.go)

	// reg is the schema registry (nil: none), set by Run before anything is read or written.
	reg *schemas.Registry
}

type storeState struct {
	*partStore
	epoch    uint64
	lastUsed time.Time
	sweep    sweepState // the expiry sweep's, set once a batch commits (sweep.go)
	// legacyUntilMs ends the window in which new signals are also looked up under their legacy id (see
	// legacyLookups); legacyKnown once it was read from committed state, legacyDecided once this instance
	// decided it for a partition that had none.
	legacyUntilMs              int64
	legacyKnown, legacyDecided bool
}

// useRegistry connects to the schema registry and registers the schema of every topic the processor writes
// with the contract's codecs.
func (p *Processor) useRegistry(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg, err := schemas.NewRegistry(rctx, p.cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		topic string
		rec   schemas.Record
	}{
		{p.resolve, schemas.Signals}, {p.idents, schemas.IdentityLinks}, {p.dlq, schemas.DeadLetters},
		{p.cfg.Topics.Name(schemas.TopicErasures), schemas.Erasures},
	} {
		if err := reg.Register(rctx, w.topic, w.rec); err != nil {
			return err
		}
	}
	p.reg, p.core.reg = reg, reg
	p.log.Info("reading and writing the schema registry wire format", "registry", reg.URL())
	return nil
}

// New validates cfg and returns a processor.
func New(cfg Config) (*Processor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var w *rules.Watcher
	if cfg.Mapper == nil && !cfg.DisableRules {
		if w, cfg.Mapper, err = newRulesWatcher(cfg); err != nil {
			return nil, err
		}
	}
	p := &Processor{
		watcher: w,
		cfg:     cfg,
		log:     cfg.Logger.With("stage", "processor"),
		m:       newMetrics(cfg.Registry),
		core: NewCore(CoreConfig{DedupWindow: cfg.DedupWindow, MaxHeldPerVisitor: cfg.MaxHeldPerVisitor,
			MaxHeldAge: cfg.MaxHeldAge, Mapper: cfg.Mapper, Now: cfg.Now}),
		raw:      cfg.Topics.Name(schemas.TopicRaw),
		idents:   cfg.Topics.Name(schemas.TopicIdentities),
		resolve:  cfg.Topics.Name(schemas.TopicResolved),
		dlq:      cfg.Topics.Name(schemas.TopicDLQ),
		clog:     cfg.Topics.Name(TopicChangelog),
		aliases:  cfg.Topics.Name(TopicAliases),
		epochs:   make(map[int32]uint64),
		assigned: make(map[int32]bool),
		stores:   make(map[int32]*storeState),
		addr:     make(chan string, 1),
	}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "signalstage",
			Subsystem: "processor", Name: "ready", Help: "1 when /readyz says ready: joined, every assigned " +
				"partition restored, a broker reachable."}, func() float64 {
			if p.readiness().Ready {
				return 1
			}
			return 0
		}))
	}
	return p, nil
}

// AdminAddr returns the address the admin listener is bound to, once it is (for tests using port 0).
func (p *Processor) AdminAddr(ctx context.Context) (string, error) {
	select {
	case a := <-p.addr:
		p.addr <- a
		return a, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Run processes until ctx is canceled (nil error) or a non-retryable Kafka or state error occurs. With mapping
// rules, it runs the rules watcher alongside and processes nothing before the rules that existed at start are in
// effect; the watcher's failure stops the processor with its error.
func (p *Processor) Run(ctx context.Context) (err error) {
	lock, err := lockStateDir(p.cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	p.stop = ctx
	defer cancel(nil)
	adm, admCl, err := p.admin()
	if err != nil {
		return err
	}
	defer admCl.Close()
	res, err := p.cfg.Topics.Ensure(ctx, adm)
	res.Log(p.log)
	if err != nil {
		// Refused credentials say what to fix, as in the other stages (schemas/kafkaconn).
		return fmt.Errorf("ensuring topics: %w", kafkaconn.Explain(err))
	}
	res, err = schemas.EnsureTopics(ctx, adm, p.cfg.Topics.Replication, p.cfg.internalSpecs()...)
	res.Log(p.log)
	if err != nil {
		return fmt.Errorf("ensuring the processor's topics: %w", kafkaconn.Explain(err))
	}
	if p.cfg.SchemaRegistry != "" {
		if err := p.useRegistry(ctx); err != nil {
			return fmt.Errorf("-schema-registry: %w", err)
		}
	}
	waitRules, err := p.runWatcher(ctx, cancel)
	if err != nil {
		return err
	}
	defer func() {
		cancel(nil)
		if werr := waitRules(); err == nil && parent.Err() == nil && werr != nil {
			err = fmt.Errorf("mapping rules: %w", werr)
		}
	}()
	if p.cfg.AdminAddr != "" {
		stop, err := p.serveAdmin()
		if err != nil {
			return err
		}
		defer stop()
	}
	if p.watcher != nil {
		// Nothing is processed before the rules in effect at start are read: say so if it takes long.
		tick := time.NewTicker(10 * time.Second)
	wait:
		for {
			select {
			case <-p.watcher.Ready():
				break wait
			case <-tick.C:
				p.log.Warn("waiting for the mapping rules before processing", "topic", p.cfg.Topics.Name(schemas.TopicRules))
			case <-ctx.Done():
				tick.Stop()
				return nil
			}
		}
		tick.Stop()
	}
	waitErasures := p.startErasures(ctx, cancel) // returns once the requests at start are read
	defer func() {
		cancel(nil)
		if werr := waitErasures(); err == nil && parent.Err() == nil {
			err = werr
		}
	}()
	p.cache = pebble.NewCache(p.cfg.CacheBytes)
	defer p.cache.Unref()
	p.m.blockCache.cache.Store(p.cache)
	defer p.m.blockCache.cache.Store(nil)
	defer p.closeStores()
	go p.watchBroker(ctx)
	return p.runSessions(ctx)
}

func (p *Processor) admin() (*kadm.Client, *kgo.Client, error) {
	cl, err := kgo.NewClient(p.cfg.kafkaOpts()...)
	if err != nil {
		return nil, nil, fmt.Errorf("creating admin client: %w", err)
	}
	return kadm.NewClient(cl), cl, nil
}

func (p *Processor) clientOpts() []kgo.Opt {
	opts := p.cfg.kafkaOpts(
		kgo.TransactionalID(p.cfg.TransactionalID),
		kgo.TransactionTimeout(p.cfg.TransactionTimeout),
		// A produce that cannot reach a broker fails the batch after this long rather than waiting for the
		// broker forever: the session is then replaced (runSessions), and /readyz says not ready.
		kgo.RecordDeliveryTimeout(p.cfg.TransactionTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		kgo.HeartbeatInterval(min(3*time.Second, p.cfg.SessionTimeout/5)),
		kgo.ConsumeTopics(p.raw, p.idents, p.aliases),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Range assigns partition n of signals.raw, identities and aliases to the same member (same partition counts,
		// same subscriptions), which is what co-partitioned state needs. It is eager: a rebalance revokes
		// everything, which is cheap here because a store that comes back only reads the changelog tail.
		kgo.Balancers(kgo.RangeBalancer()),
		// No BlockRebalanceOnPoll: the session aborts the transaction of any batch a rebalance overlapped, so a
		// rebalance never has to wait for a (possibly slow, restoring) batch, and nothing from an aborted batch
		// reaches the stores (they are written only after a commit).
		kgo.OnPartitionsAssigned(p.assign),
		kgo.OnPartitionsRevoked(p.takeAway),
		kgo.OnPartitionsLost(p.takeAway),
		kgo.RecordPartitioner(&partitioner{manual: []string{p.clog, p.aliases}, keyed: kgo.StickyKeyPartitioner(nil)}),
		kgo.WithLogger(kgoLogger{p.log.With("component", "kgo")}),
		kgo.ProducerBatchMaxBytes(1<<20),
		// lz4 as ingest uses: cheaper on CPU than kgo's default snappy for the same ratio on JSON-heavy records.
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
	)
	if p.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(p.cfg.InstanceID))
	}
	return opts
}

// takeAway runs on kgo's group goroutine when partitions are revoked or lost: it only invalidates their stores.
func (p *Processor) takeAway(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	for _, parts := range lost {
		for _, part := range parts {
			p.epochs[part]++
			delete(p.assigned, part)
		}
	}
	p.assignGen++
	p.restored = false
}

// assign runs on kgo's group goroutine when the group gives this instance partitions (the same numbers of every
// input topic): the loop restores their stores before its next poll.
func (p *Processor) assign(_ context.Context, _ *kgo.Client, got map[string][]int32) {
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	for _, part := range got[p.raw] {
		p.assigned[part] = true
	}
	p.joined = true
	p.assignGen++
	p.restored = false
}

func (p *Processor) epoch(part int32) uint64 {
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	return p.epochs[part]
}

// kgoLogger passes franz-go's warnings and errors (group, transaction and broker trouble) to slog; its info and
// debug logs are per request and too chatty for production.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	if level == kgo.LogLevelError {
		lvl = slog.LevelError
	}
	k.l.Log(context.Background(), lvl, msg, keyvals...)
}

// partitioner writes the processor's internal records (changelog, aliases) to the partition the runner chose,
// and everything else by key with kgo's default, Kafka-compatible hash, so outputs stay co-partitioned.
type partitioner struct {
	manual []string
	keyed  kgo.Partitioner
}

func (p *partitioner) ForTopic(t string) kgo.TopicPartitioner {
	if slices.Contains(p.manual, t) {
		return kgo.ManualPartitioner().ForTopic(t)
	}
	return p.keyed.ForTopic(t)
}

// partitionOfKey is the partition kgo's default partitioner gives key among n partitions.
func partitionOfKey(key []byte, n int32) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: key}, int(n)))
}

func (p *Processor) serveAdmin() (func(), error) {
	ln, err := net.Listen("tcp", p.cfg.AdminAddr)
	if err != nil {
		return nil, fmt.Errorf("listening on -admin-addr %s: %w", p.cfg.AdminAddr, err)
	}
	p.addr <- ln.Addr().String()
	g := p.cfg.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", p.serveReady)
	mux.Handle(pprofhttp.Prefix, pprofhttp.Handler(p.cfg.AdminToken))
	api, closeAPI, err := p.rulesAPI()
	if err != nil {
		ln.Close()
		return nil, err
	}
	if api != nil {
		mux.Handle(rules.APIPrefix, api)
		mux.Handle(rules.APIPrefix+"/", api)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("admin listener", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		closeAPI()
	}, nil
}

// store returns the state of an input partition this instance owns, opening and catching it up with the
// changelog when it is new here or was taken away since it was last used.
func (p *Processor) store(ctx context.Context, part int32) (*storeState, error) {
	ep := p.epoch(part)
	if s, ok := p.stores[part]; ok {
		s.lastUsed = time.Now()
		if s.epoch == ep {
			return s, nil
		}
		// Another instance may have owned the partition meanwhile: catch up below from our checkpoint.
		if err := p.restore(ctx, s.partStore, part); err != nil {
			return nil, err
		}
		s.sweep.forget() // what the catch-up wrote, the sweep has not seen
		s.epoch = ep
		return s, nil
	}
	dir := filepath.Join(p.cfg.StateDir, strconv.Itoa(int(part)))
	ps, err := openPartStore(dir, p.clog+"/"+strconv.Itoa(int(part)), p.cache, p.cfg.MemTableBytes, p.cfg.VisitorCacheBytes)
	if err != nil {
		return nil, err
	}
	if err := p.restore(ctx, ps, part); err != nil {
		ps.close()
		return nil, err
	}
	s := &storeState{partStore: ps, epoch: ep, lastUsed: time.Now()}
	p.stores[part] = s
	p.m.partitions.Set(float64(len(p.stores)))
	return s, nil
}

// storeIdleClose is how long the store of a partition taken away from this instance stays open in case it comes
// back (an eager rebalance takes everything away and gives most of it back at once).
const storeIdleClose = 2 * time.Minute

// closeIdle closes the stores of partitions taken away and not used since storeIdleClose: their memtables and
// open files are released; the disk stays, so a later return only catches up.
func (p *Processor) closeIdle() {
	for part, s := range p.stores {
		if s.epoch != p.epoch(part) && time.Since(s.lastUsed) > storeIdleClose {
			if err := s.close(); err != nil {
				p.log.Warn("closing state", "partition", part, "err", err)
			}
			delete(p.stores, part)
		}
	}
	p.m.partitions.Set(float64(len(p.stores)))
	p.m.setFilterBytes(p.stores)
}

func (p *Processor) closeStores() {
	for part, s := range p.stores {
		if err := s.close(); err != nil {
			p.log.Warn("closing state", "partition", part, "err", err)
		}
		delete(p.stores, part)
	}
}
