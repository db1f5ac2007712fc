package sink

import "github.com/prometheus/client_golang/prometheus"

// metrics of one Sink; every name is prefixed signalstage_sink_.
type metrics struct {
	records       *prometheus.CounterVec // by topic (without prefix)
	tombstones    prometheus.Counter
	rowsInserted  *prometheus.CounterVec   // by table
	flushes       *prometheus.CounterVec   // by table and reason (rows, bytes, age, shutdown)
	flushSeconds  *prometheus.HistogramVec // by table, one successful insert
	inserts       *prometheus.CounterVec   // by table: INSERTs acknowledged (a batch split by partitions takes several)
	insertErrors  *prometheus.CounterVec   // by table: failed attempts (retried, or bisected when the rows were refused)
	refusedRows   *prometheus.CounterVec   // by table and outcome: rows ClickHouse refused for their data
	deadLetters   *prometheus.CounterVec   // by reason kind: records the sink could not decode or convert
	bufferedRows  *prometheus.GaugeVec     // by table
	paused        prometheus.Gauge
	lag           *prometheus.GaugeVec // by topic: records behind the partitions' last stable offsets
	partitionLag  *prometheus.GaugeVec // by topic and partition: the group's committed lag (WatchLag)
	commits       prometheus.Counter
	commitErrors  prometheus.Counter
	migrationsRun prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "signalstage", "sink"
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_total",
			Help: "Kafka records consumed, by topic (without the deployment prefix)."}, []string{"topic"}),
		tombstones: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tombstones_total",
			Help: "Records with a nil value (compaction tombstones), skipped."}),
		rowsInserted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rows_inserted_total",
			Help: "Rows ClickHouse acknowledged, by table."}, []string{"table"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "flushes_total",
			Help: "Batches inserted, by table and what triggered the flush (rows, bytes, age, shutdown)."}, []string{"table", "reason"}),
		flushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "insert_seconds",
			Help: "Duration of one successful INSERT, by table.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"table"}),
		inserts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "inserts_total",
			Help: "INSERTs ClickHouse acknowledged, by table: one per batch, more for a batch that spans more " +
				"partitions than one INSERT may touch."}, []string{"table"}),
		insertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "insert_errors_total",
			Help: "Failed insert attempts, by table: retried with capped backoff, or, when ClickHouse refused the rows themselves, bisected to isolate them."}, []string{"table"}),
		refusedRows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refused_rows_total",
			Help: "Rows ClickHouse refused for their data, by table and outcome: dead_lettered, or held (a row of " +
				"dead_letters itself: retried until ClickHouse takes it, its offset held)."}, []string{"table", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Records the sink could not decode, convert or get ClickHouse to take, written to dead_letters, by reason."}, []string{"reason"}),
		bufferedRows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "buffered_rows",
			Help: "Rows waiting for the next insert, by table."}, []string{"table"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "lag_records",
			Help: "Records not yet consumed, by topic: last stable offset minus the next offset, summed over the " +
				"partitions this member owns (as of their latest fetch)."}, []string{"topic"}),
		partitionLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "partition_lag_records",
			Help: "Records the group has not committed yet, by topic and partition: last stable offset minus the " +
				"group's committed offset, measured every few seconds (the same on every member)."}, []string{"topic", "partition"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "fetch_paused",
			Help: "1 while fetching is paused because inserts are failing."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "offset_commits_total",
			Help: "Successful offset commits."}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "offset_commit_errors_total",
			Help: "Failed offset commits (the rows are in ClickHouse; the offsets are committed with the next flush)."}),
		migrationsRun: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "migrations_applied_total",
			Help: "Migrations applied by this process."}),
	}
	for _, c := range []prometheus.Collector{m.records, m.tombstones, m.rowsInserted, m.flushes, m.flushSeconds,
		m.inserts, m.insertErrors, m.refusedRows, m.deadLetters, m.bufferedRows, m.paused, m.lag, m.partitionLag, m.commits, m.commitErrors, m.migrationsRun} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
