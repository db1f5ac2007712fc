package processor

import "github.com/prometheus/client_golang/prometheus"

// metrics of one processor, registered on the registry the caller passes. Counters derived from the core's Stats
// move only when the batch that produced them committed, so they count what downstream sees.
type metrics struct {
	records         *prometheus.CounterVec // topic
	signals         *prometheus.CounterVec // kind: cold, linked, rehydrated
	duplicates      prometheus.Counter
	reemitted       prometheus.Counter
	noVisitor       prometheus.Counter
	heldDropped     *prometheus.CounterVec // reason: evicted (per-visitor cap), expired (age)
	dedupExpired    prometheus.Counter
	sweepExamined   prometheus.Counter
	links           *prometheus.CounterVec // direction: out, applied, stale
	aliases         *prometheus.CounterVec // direction: out, in
	deadLetters     prometheus.Counter
	transactions    *prometheus.CounterVec // result: committed, aborted
	txnSeconds      prometheus.Histogram
	batchRecords    prometheus.Histogram
	restoreRecords  prometheus.Counter
	restoreSeconds  prometheus.Histogram
	partitions      prometheus.Gauge
	visitorCache    *prometheus.CounterVec // result: hit, miss
	dedupFilter     *prometheus.CounterVec // result: absent, maybe, not_ready
	dedupFilterSize prometheus.Gauge
	legacyIDs       *prometheus.CounterVec // result: hit, miss
	legacyWindow    prometheus.Gauge
	lag             *prometheus.GaugeVec // topic (without prefix), partition: of the partitions this instance owns
	sessionRestarts prometheus.Counter
	suppressed      prometheus.Counter // events of erased people
	blockCache      *blockCacheCollector
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "signalstage", "processor"
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_total",
			Help: "Input records processed in committed transactions, by topic (raw, identities)."}, []string{"topic"}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "signals_total",
			Help: "Signals emitted, by kind: cold, linked (at once) and rehydrated (held, then linked)."}, []string{"kind"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "duplicates_total",
			Help: "Events dropped as duplicates (same content at another offset within the dedup window)."}),
		reemitted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reemitted_total",
			Help: "Events read again at an offset already processed (replay), emitted again with a higher version."}),
		noVisitor: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cold_without_visitor_total",
			Help: "Cold signals with no legal anonymousId or userId: emitted but never held, so never rehydrated."}),
		heldDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "held_dropped_total",
			Help: "Held cold signals that fell out of cold storage: evicted (per-visitor cap) or expired (age)."}, []string{"reason"}),
		dedupExpired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dedup_expired_total",
			Help: "Dedup entries removed after the dedup window."}),
		sweepExamined: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sweep_keys_examined_total",
			Help: "Committed state keys the expiry sweep examined (none while nothing a partition holds can be due)."}),
		links: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "identity_links_total",
			Help: "Identity links: out (emitted), applied (read and applied), stale (read, older than known)."}, []string{"direction"}),
		aliases: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "aliases_total",
			Help: "(anonymousId, userId) pairs of cold events: out (sent to the userId's partition), in (recorded there)."}, []string{"direction"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Input records sent to the dead-letter topic."}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "transactions_total",
			Help: "Kafka transactions ended, by result (committed, aborted)."}, []string{"result"}),
		txnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "transaction_end_seconds",
			Help: "Time to end (flush and commit) one transaction.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 12)}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_records",
			Help: "Input records per transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		restoreRecords: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "restore_records_total",
			Help: "Changelog records read while restoring partition state."}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "restore_seconds",
			Help: "Time to restore (catch up) one partition's state from the changelog.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 9)}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "open_partitions",
			Help: "Partition stores currently open on this instance."}),
		visitorCache: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "visitor_cache_lookups_total",
			Help: "Reads of visitor state (identity, held counter, aliases) by result: hit (answered from memory) or miss (read from Pebble)."}, []string{"result"}),
		dedupFilter: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dedup_filter_total",
			Help: "Dedup lookups of committed state by the in-memory filter's answer: absent (answered without reading Pebble), " +
				"maybe (read from Pebble: present, or a false positive) or not_ready (read from Pebble while the filter is built " +
				"after the store opened)."}, []string{"result"}),
		dedupFilterSize: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "dedup_filter_bytes",
			Help: "Memory of the dedup filters of the open partition stores (with filters being rebuilt)."}),
		legacyIDs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "legacy_id_lookups_total",
			Help: "Dedup lookups of a signal under its other id (the upgrade to the event contract), by result: hit (the signal was " +
				"first emitted under that id, which it keeps) or miss."}, []string{"result"}),
		legacyWindow: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "legacy_id_window_partitions",
			Help: "Open partitions whose state may still hold dedup entries from before the event contract, so new signals are " +
				"also looked up under their legacy id (0 once the dedup window after the upgrade has passed)."}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "erasure_suppressed_total",
			Help: "Events of an erased person (signals.erasures) not emitted."}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "consumer_lag_records",
			Help: "Input records not yet committed by the group, by topic and partition, for the partitions this instance " +
				"owns: the last stable offset minus the group's committed offset, measured every 5 s."}, []string{"topic", "partition"}),
		sessionRestarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "session_restarts_total",
			Help: "Kafka sessions replaced after a failure (a broker outage, a transaction that could not end): the open " +
				"transaction aborted, the group left and joined again, every store caught up from the changelog."}),
	}
	m.blockCache = newBlockCacheCollector()
	if reg != nil {
		reg.MustRegister(m.suppressed, m.blockCache)
		reg.MustRegister(m.records, m.signals, m.duplicates, m.reemitted, m.noVisitor, m.heldDropped, m.dedupExpired, m.sweepExamined,
			m.links, m.aliases, m.deadLetters, m.transactions, m.txnSeconds, m.batchRecords, m.restoreRecords, m.restoreSeconds,
			m.partitions, m.visitorCache, m.dedupFilter, m.dedupFilterSize, m.legacyIDs, m.legacyWindow, m.lag, m.sessionRestarts)
	}
	return m
}

// addCacheLookups moves the lookups a store's visitor cache counted into the metrics.
func (m *metrics) addCacheLookups(c *visitorCache) {
	if c == nil {
		return
	}
	m.visitorCache.WithLabelValues("hit").Add(float64(c.hits))
	m.visitorCache.WithLabelValues("miss").Add(float64(c.misses))
	c.hits, c.misses = 0, 0
}

// addFilterLookups moves the lookups a store's dedup filter counted into the metrics.
func (m *metrics) addFilterLookups(f *dedupFilter) {
	absent, maybe, notReady := f.takeLookups()
	m.dedupFilter.WithLabelValues("absent").Add(float64(absent))
	m.dedupFilter.WithLabelValues("maybe").Add(float64(maybe))
	m.dedupFilter.WithLabelValues("not_ready").Add(float64(notReady))
}

// setFilterBytes sets the memory of the stores' dedup filters.
func (m *metrics) setFilterBytes(stores map[int32]*storeState) {
	n := 0
	for _, s := range stores {
		n += s.filter.bytes()
	}
	m.dedupFilterSize.Set(float64(n))
}

// addStats adds a committed batch's core stats.
func (m *metrics) addStats(s Stats) {
	m.signals.WithLabelValues("cold").Add(float64(s.Cold))
	m.signals.WithLabelValues("linked").Add(float64(s.Linked))
	m.signals.WithLabelValues("rehydrated").Add(float64(s.Rehydrated))
	m.duplicates.Add(float64(s.Duplicates))
	m.reemitted.Add(float64(s.Reemitted))
	m.noVisitor.Add(float64(s.NoVisitor))
	m.heldDropped.WithLabelValues("evicted").Add(float64(s.HeldEvicted))
	m.heldDropped.WithLabelValues("expired").Add(float64(s.HeldExpired))
	m.dedupExpired.Add(float64(s.DedupExpired))
	m.sweepExamined.Add(float64(s.SweepExamined))
	m.links.WithLabelValues("out").Add(float64(s.LinksOut))
	m.links.WithLabelValues("applied").Add(float64(s.LinksApplied))
	m.links.WithLabelValues("stale").Add(float64(s.LinksStale))
	m.aliases.WithLabelValues("out").Add(float64(s.AliasesOut))
	m.aliases.WithLabelValues("in").Add(float64(s.AliasesIn))
	m.legacyIDs.WithLabelValues("hit").Add(float64(s.LegacyHits))
	m.legacyIDs.WithLabelValues("miss").Add(float64(s.LegacyLookups - s.LegacyHits))
	m.suppressed.Add(float64(s.Suppressed))
}
