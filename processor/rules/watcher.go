package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Brokers to bootstrap from (required).
	Brokers []string
	// Topic is the full name of the rules topic, schemas.Config.Name(schemas.TopicRules) (required).
	Topic string
	// ClientOpts are added to the consumer's options (TLS, SASL, ...).
	ClientOpts []kgo.Opt
	// Logger gets rule errors and swaps (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, gets the watcher's metrics: signalstage_processor_rules_loaded,
	// signalstage_processor_rules_invalid_total, signalstage_processor_rules_swaps_total,
	// signalstage_processor_rules_regex_budget_exhausted_total.
	Registerer prometheus.Registerer
	// OnSwap, when set, is called (on the watcher's goroutine) after each new Set is in effect.
	OnSwap func(*Set)
}

// Watcher keeps the newest rule Set of the rules topic. It consumes every partition of the topic directly, from
// the start and without a consumer group (every instance needs every rule), applies updates and tombstones, and
// atomically swaps in a rebuilt Set after each batch of changes, so a change is in effect within about a second
// on every instance. Set never blocks and never returns nil.
type Watcher struct {
	cfg     WatcherConfig
	log     *slog.Logger
	current atomic.Pointer[Set]
	ready   chan struct{}
	once    sync.Once

	loaded  prometheus.Gauge
	invalid prometheus.Counter
	swaps   prometheus.Counter
}

// NewWatcher validates cfg; Run does the work.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("rules watcher: no brokers")
	}
	if cfg.Topic == "" {
		return nil, errors.New("rules watcher: no topic")
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "signalstage_processor_rules_loaded",
			Help: "Rules in the Set in effect, disabled ones included."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "signalstage_processor_rules_invalid_total",
			Help: "Rule records skipped because they did not decode or validate."}),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "signalstage_processor_rules_swaps_total",
			Help: "New rule Sets put in effect."}),
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if cfg.Registerer != nil {
		budget := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "signalstage_processor_rules_regex_budget_exhausted_total",
			Help: "Regex conditions not evaluated (so not holding) because their event had spent its regex budget."},
			func() float64 { return float64(RegexBudgetExhausted()) })
		for _, c := range []prometheus.Collector{w.loaded, w.invalid, w.swaps, budget} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("rules watcher: registering metrics: %w", err)
			}
		}
	}
	w.current.Store(&Set{tenants: map[string]*tenantRules{}})
	return w, nil
}

// Set returns the rule Set in effect: empty until the topic's content at start has been read (see Ready).
func (w *Watcher) Set() *Set { return w.current.Load() }

// Ready is closed once the whole topic as it was when Run started has been read and its Set is in effect. The
// processor should wait for it before mapping events, or it would emit unmapped signals for covered events.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Run consumes the rules topic until ctx is done; it returns nil then, or the error that stopped it. Call it
// once per Watcher.
func (w *Watcher) Run(ctx context.Context) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(w.cfg.Brokers...),
		kgo.ConsumeTopics(w.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}, w.cfg.ClientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("rules watcher: creating client: %w", err)
	}
	defer cl.Close()

	ends, err := w.endOffsets(ctx, cl)
	if err != nil {
		return err
	}
	state := map[string]map[string]Rule{} // tenant → key → rule
	dirty := map[string]bool{}            // tenants changed since the last swap
	pos := map[int32]int64{}
	idle := 0
	for {
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var fetchErr error
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				w.log.Warn("fetching rules", "topic", topic, "partition", p, "err", err)
				fetchErr = err
			}
		})
		if errors.Is(fetchErr, kgo.ErrClientClosed) {
			return fmt.Errorf("rules watcher: %w", fetchErr)
		}
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			pos[r.Partition] = r.Offset + 1
			if tenant, changed := w.applyRecord(state, r); changed {
				dirty[tenant] = true
			}
		})
		if n == 0 {
			idle++
		} else {
			idle = 0
		}
		if ready := w.isReady(); !ready && srules.Reached(pos, ends, idle) {
			w.rebuild(state, nil)
			clear(dirty)
			w.once.Do(func() { close(w.ready) })
		} else if ready && len(dirty) > 0 {
			w.rebuild(state, dirty)
			clear(dirty)
		}
	}
}

// rebuild swaps in a Set built from state: whole when dirty is nil (the first Set, once the topic's content at
// start is read), else the current Set with only the dirty tenants compiled again.
func (w *Watcher) rebuild(state map[string]map[string]Rule, dirty map[string]bool) {
	if dirty == nil {
		var all []Rule
		for _, rs := range state {
			for _, r := range rs {
				all = append(all, r)
			}
		}
		w.swap(Build(all))
		return
	}
	changed := make(map[string][]Rule, len(dirty))
	for tenant := range dirty {
		rs := []Rule{}
		for _, r := range state[tenant] {
			rs = append(rs, r)
		}
		changed[tenant] = rs
	}
	w.swap(w.Set().update(changed))
}

func (w *Watcher) isReady() bool {
	select {
	case <-w.ready:
		return true
	default:
		return false
	}
}

// endOffsets returns the end offset of every partition of the topic when the watcher starts: reaching them
// means the rules that existed at start are all read.
func (w *Watcher) endOffsets(ctx context.Context, cl *kgo.Client) (map[int32]int64, error) {
	for attempt := 0; ; attempt++ {
		listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, w.cfg.Topic)
		if err == nil {
			err = listed.Error()
		}
		if err == nil {
			ends := map[int32]int64{}
			listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
			if len(ends) > 0 {
				return ends, nil
			}
			err = fmt.Errorf("topic %s has no partitions", w.cfg.Topic)
		}
		// Capped backoff: the broker or the topic may still be coming up when the processor starts.
		wait := min(time.Duration(1<<min(attempt, 5))*100*time.Millisecond, 3*time.Second)
		w.log.Warn("listing rules topic end offsets", "topic", w.cfg.Topic, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("rules watcher: listing end offsets: %w", err)
		case <-time.After(wait):
		}
	}
}

// applyRecord updates state with one record (schemas/rules.Apply) and reports the tenant and whether it changed
// anything; a bad record is counted and logged.
func (w *Watcher) applyRecord(state map[string]map[string]Rule, r *kgo.Record) (string, bool) {
	tenant, changed, err := srules.Apply(state, r)
	if err != nil {
		w.invalid.Inc()
		w.log.Warn("skipping rule record", "err", err)
	}
	return tenant, changed
}

func (w *Watcher) swap(s *Set, errs []error) {
	for _, err := range errs {
		w.invalid.Inc()
		w.log.Warn("skipping invalid rule", "err", err)
	}
	w.current.Store(s)
	w.loaded.Set(float64(s.Len()))
	w.swaps.Inc()
	w.log.Info("rules in effect", "rules", s.Len(), "tenants", len(s.tenants))
	if w.cfg.OnSwap != nil {
		w.cfg.OnSwap(s)
	}
}

// Snapshot reads the whole rules topic once and returns its Set (for the CLI and tests).
func Snapshot(ctx context.Context, cfg WatcherConfig) (*Set, error) {
	cfg.Registerer = nil
	w, err := NewWatcher(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-w.Ready():
		cancel()
		<-done
		return w.Set(), nil
	case err := <-done:
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("reading rules: %w", err)
	}
}
