package sink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
)

// Sink consumes signals.resolved, identities and signals.dlq and loads them into ClickHouse. One goroutine owns
// the batches and the offsets; Run is not safe to call twice.
type Sink struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	em  *eraseMetrics
	// erased is the suppression list (erased_ids): rows of erased people are dropped on load. Loop-owned.
	erased erased
	conn   driver.Conn
	// cluster, on a ClickHouse cluster (Config.ClickHouseCluster), inserts each block into its shard; nil on one
	// server, where blocks go to conn.
	cluster *clusterWriter
	client  *kgo.Client
	topics  map[string]string // full topic name -> base name
	// consumed caches the records_total counter per full topic name (no label lookup per record).
	consumed map[string]prometheus.Counter

	signals    *table[signalRow]
	identities *table[identityRow]
	dead       *table[deadLetterRow]
	tables     []buffer

	// next is, per partition consumed, the offset after the last record added to a batch.
	next      map[tp]kgo.EpochOffset
	committed map[tp]int64
	// stable is, per partition, the last stable offset its latest fetch reported (for the lag gauge).
	stable map[tp]int64

	// Inserts run on InsertConcurrency flusher goroutines, so fetching and decoding go on while ClickHouse
	// works. jobs holds at most one batch waiting behind the ones being inserted: when all are taken, the loop
	// blocks, stops polling, and memory stays bounded. inflight (loop-owned) holds batches handed over but not
	// yet acknowledged; their offsets stay uncommitted. failing counts flushers in a retry loop (under pauseMu):
	// fetching is paused while it is above zero.
	jobs     chan *job
	results  chan *job
	inflight map[*job]struct{}
	pauseMu  sync.Mutex
	failing  int
	// refusedStreak counts, per table, the rows ClickHouse refused for their data since it last took a block
	// (under pauseMu; see Sink.refuse).
	refusedStreak map[string]int
	// wake cancels the poll in progress (set by the loop around each poll, called by flushers).
	wake atomic.Pointer[context.CancelFunc]

	// revoked collects partitions the group took away (kgo calls back from its own goroutine); the loop forgets
	// their offsets so it never commits them again. Rows of theirs already batched are still inserted: a
	// duplicate is harmless, and committing stays safe because a committed offset is always backed by rows.
	mu      sync.Mutex
	revoked []tp

	running atomic.Bool // migrations applied and loading (Ready)

	// reg looks up the writer schemas of registry-framed records (nil: no registry), set by Run.
	reg *schemas.Registry
}

// New validates cfg and builds a Sink. It does not connect; Run does.
func New(cfg Config) (*Sink, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	em, err := newEraseMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	s := &Sink{
		cfg: cfg, log: cfg.Logger, m: m, em: em, erased: erased{},
		signals:       newSignalsTable(cfg.Database),
		identities:    newIdentitiesTable(cfg.Database, cfg.Topics.Name(schemas.TopicIdentities)),
		dead:          newDeadLettersTable(cfg.Database),
		next:          map[tp]kgo.EpochOffset{},
		committed:     map[tp]int64{},
		stable:        map[tp]int64{},
		jobs:          make(chan *job, 1),
		results:       make(chan *job, 16),
		inflight:      map[*job]struct{}{},
		refusedStreak: map[string]int{},
		topics:        map[string]string{},
		consumed:      map[string]prometheus.Counter{},
	}
	s.tables = []buffer{s.signals, s.identities, s.dead}
	var names []string
	for _, base := range []string{schemas.TopicResolved, schemas.TopicIdentities, schemas.TopicDLQ, schemas.TopicErasures} {
		full := cfg.Topics.Name(base)
		s.topics[full] = base
		s.consumed[full] = m.records.WithLabelValues(base)
		names = append(names, full)
	}
	s.conn, err = OpenClickHouse(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.ClickHouseCluster != "" {
		if s.cluster, err = newClusterWriter(cfg, s.conn); err != nil {
			_ = s.conn.Close()
			return nil, err
		}
	}
	group := []kgo.Opt{kgo.ConsumerGroup(Group(cfg.Topics.Prefix))}
	if cfg.InstanceID != "" {
		group = append(group, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.SessionTimeout > 0 {
		group = append(group, kgo.SessionTimeout(cfg.SessionTimeout), kgo.HeartbeatInterval(min(3*time.Second, cfg.SessionTimeout/5)))
	}
	s.client, err = kgo.NewClient(cfg.kafkaOpts(append(group,
		kgo.ConsumeTopics(names...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Offsets are committed by hand, only once ClickHouse holds every row below them.
		kgo.DisableAutoCommit(),
		// Larger fetches than kgo's 1 MiB per partition: fewer requests for the broker and this process to
		// handle when catching up (measured: about 0.8 µs less CPU per row). kgo's FetchMaxBytes (50 MiB)
		// still caps one fetch.
		kgo.FetchMaxPartitionBytes(8<<20),
		kgo.OnPartitionsRevoked(s.forget),
		kgo.OnPartitionsLost(s.forget),
	)...)...)
	if err != nil {
		_ = s.conn.Close()
		if s.cluster != nil {
			s.cluster.close()
		}
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return s, nil
}

// OpenClickHouse opens a native connection without a default database (the migrations may create it). On a
// cluster it connects to the first node of ClickHouseShards that answers (ClickHouseAddr is not used).
func OpenClickHouse(cfg Config) (driver.Conn, error) {
	addrs := []string{cfg.ClickHouseAddr}
	if cfg.ClickHouseCluster != "" {
		addrs = cfg.clusterAddrs()
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        addrs,
		Auth:        clickhouse.Auth{Username: cfg.ClickHouseUser, Password: cfg.ClickHousePassword},
		TLS:         cfg.ClickHouseTLS,
		DialTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("opening clickhouse %s: %w", cfg.ClickHouseAddr, err)
	}
	return conn, nil
}

func (s *Sink) forget(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, parts := range lost {
		for _, p := range parts {
			s.revoked = append(s.revoked, tp{topic, p})
		}
	}
}

func (s *Sink) drainRevoked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.revoked {
		delete(s.next, p)
		delete(s.committed, p)
		delete(s.stable, p)
	}
	s.revoked = s.revoked[:0]
}

// Run ensures the topics, applies the migrations and loads until ctx is done. On cancellation it flushes and
// commits what it holds (the final inserts get InsertTimeout after ctx ends) and returns nil; it returns an error
// only when it cannot start or the Kafka client fails for good. Run closes the Sink's clients when it returns.
// openRegistry connects to the schema registry, failing when it does not answer.
func openRegistry(ctx context.Context, url string) (*schemas.Registry, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg, err := schemas.NewRegistry(rctx, url)
	if err != nil {
		return nil, fmt.Errorf("-schema-registry: %w", err)
	}
	return reg, nil
}

func (s *Sink) Run(ctx context.Context) error {
	defer s.conn.Close()
	defer s.client.Close()
	if s.cluster != nil {
		defer s.cluster.close()
	}
	res, err := s.cfg.Topics.Ensure(ctx, kadm.NewClient(s.client))
	res.Log(s.log)
	if err != nil {
		return fmt.Errorf("ensuring topics: %w", kafkaconn.Explain(err))
	}
	if s.cfg.SchemaRegistry != "" {
		reg, err := openRegistry(ctx, s.cfg.SchemaRegistry)
		if err != nil {
			return err
		}
		s.reg = reg
		s.log.Info("reading the schema registry wire format too", "registry", reg.URL())
	}
	var applied []Migration
	if s.cluster != nil {
		var perNode map[string][]Migration
		perNode, err = MigrateClusterConfig(ctx, s.cfg)
		for addr, ms := range perNode {
			for _, m := range ms {
				s.log.Info("applied migration on a cluster node", "node", addr, "name", m.Name)
			}
		}
	} else {
		applied, err = Migrate(ctx, s.conn, s.cfg.Database)
	}
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	s.m.migrationsRun.Add(float64(len(applied)))
	for _, m := range applied {
		s.log.Info("applied migration", "name", m.Name)
	}
	if s.erased, err = loadErased(ctx, s.conn, s.cfg.Database); err != nil {
		return err
	}
	s.log.Info("sink running", "group", Group(s.cfg.Topics.Prefix), "database", s.cfg.Database)
	s.running.Store(true)
	defer s.running.Store(false)
	// Flushers keep inserting after ctx ends, until shutdown closes jobs; their own context gives the final
	// inserts InsertTimeout from the moment the loop stops (for whatever reason), then they give up.
	fctx, fcancel := context.WithCancel(context.Background())
	defer fcancel()
	var flushers sync.WaitGroup
	for range s.cfg.InsertConcurrency {
		flushers.Go(func() { s.flusher(fctx) })
	}
	flusherDone := make(chan struct{})
	go func() {
		flushers.Wait()
		close(flusherDone)
	}()
	for err == nil {
		err = s.step(ctx)
	}
	giveUp := time.AfterFunc(s.cfg.InsertTimeout, fcancel)
	defer giveUp.Stop()
	s.shutdown(flusherDone)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// step polls once (waiting at most until the oldest batch is due), batches what it got, flushes what is due and
// commits what the flushes made safe.
func (s *Sink) step(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, s.untilDue(time.Now()))
	// A flusher's acknowledgement cuts the wait short, so offsets are committed right after an insert, not at
	// the next record or interval. One arriving before the wake is set is seen through len(results).
	s.wake.Store(&cancel)
	if len(s.results) > 0 {
		cancel()
	}
	fetches := s.client.PollRecords(pctx, s.cfg.MaxPollRecords)
	s.wake.Store(nil)
	cancel()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var fatal error
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = err
		default:
			s.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
	if fatal != nil {
		return fmt.Errorf("polling: %w", fatal)
	}
	s.drainRevoked()
	s.drainResults()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.LastStableOffset >= 0 {
			s.stable[tp{p.Topic, p.Partition}] = p.LastStableOffset
		}
	})
	now := time.Now()
	var full error
	fetches.EachRecord(func(r *kgo.Record) {
		if full == nil {
			if s.topics[r.Topic] == schemas.TopicErasures {
				full = s.addErasure(ctx, r, now)
			} else {
				s.add(r, now)
			}
			// A batch goes as soon as it is full, so batches never exceed FlushRows whatever a poll returns.
			full = s.flushFull(ctx)
		}
	})
	if full != nil {
		return full
	}
	return s.flushDue(ctx, time.Now())
}

// untilDue is how long the next poll may wait: until the oldest batch reaches FlushInterval, else a full interval.
func (s *Sink) untilDue(now time.Time) time.Duration {
	wait := s.cfg.FlushInterval
	for _, b := range s.tables {
		if b.len() == 0 {
			continue
		}
		if d := b.oldest().Add(s.cfg.FlushInterval).Sub(now); d < wait {
			wait = d
		}
	}
	return max(wait, time.Millisecond)
}

// add decodes r and appends it to its table's batch; what cannot be decoded or converted goes to dead_letters.
func (s *Sink) add(r *kgo.Record, now time.Time) {
	base := s.topics[r.Topic]
	if c, ok := s.consumed[r.Topic]; ok {
		c.Inc()
	}
	p := tp{r.Topic, r.Partition}
	s.next[p] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	size := len(r.Value) + len(r.Key) + 64
	if r.Value == nil {
		// A compaction tombstone: on identities a deleted link, stored as deleted rows that replace it
		// (identities_latest and leads leave it out); elsewhere nothing to store.
		s.m.tombstones.Inc()
		if base == schemas.TopicIdentities {
			if rows, ok := tombstoneRows(r); ok {
				for _, row := range rows {
					s.identities.add(row, p, r.Offset, size, now)
				}
			}
		}
		return
	}
	var err error
	switch base {
	case schemas.TopicResolved:
		var v schemas.Signal
		if err = schemas.Signals.DecodeWith(s.reg, r.Value, &v); err == nil {
			var row signalRow
			if row, err = newSignalRow(&v, r); err == nil {
				if s.erased.signal(&row) {
					s.em.suppressed.WithLabelValues("signals").Inc()
					return
				}
				s.signals.add(row, p, r.Offset, size, now)
			}
		}
	case schemas.TopicIdentities:
		var v schemas.IdentityLink
		if err = schemas.IdentityLinks.DecodeWith(s.reg, r.Value, &v); err == nil {
			var row identityRow
			if row, err = newIdentityRow(&v, r); err == nil {
				if s.erased.identity(&row) {
					s.em.suppressed.WithLabelValues("identities").Inc()
					return
				}
				s.identities.add(row, p, r.Offset, size, now)
			}
		}
	case schemas.TopicDLQ:
		var v schemas.DeadLetter
		if err = schemas.DeadLetters.DecodeWith(s.reg, r.Value, &v); err == nil {
			s.dead.add(newDeadLetterRow(&v, r), p, r.Offset, size, now)
		}
	default:
		err = fmt.Errorf("%w: record from unexpected topic %s", ErrUnconvertible, r.Topic)
	}
	if err != nil {
		kind := reasonKind(err)
		s.m.deadLetters.WithLabelValues(kind).Inc()
		s.log.Warn("dead-lettering record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"reason", kind, "err", err)
		s.dead.add(sinkDeadLetter(r, fmt.Errorf("%s: %w", r.Topic, err)),
			p, r.Offset, size, now)
	}
}

// addErasure applies the erasure record r (see erase) before the loop reads on; its offset moves only once the
// erasure is done. A record that is not a valid erasure becomes a dead letter. The error is ctx's, when it ended
// before the erasure was applied.
func (s *Sink) addErasure(ctx context.Context, r *kgo.Record, now time.Time) error {
	if c, ok := s.consumed[r.Topic]; ok {
		c.Inc()
	}
	p := tp{r.Topic, r.Partition}
	if r.Value != nil {
		if err := s.erase(ctx, r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			kind := reasonKind(err)
			s.m.deadLetters.WithLabelValues(kind).Inc()
			s.log.Warn("dead-lettering record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
				"reason", kind, "err", err)
			s.dead.add(sinkDeadLetter(r, fmt.Errorf("%s: %w", r.Topic, err)), p, r.Offset, len(r.Value)+64, now)
		}
	}
	s.next[p] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
	return nil
}
