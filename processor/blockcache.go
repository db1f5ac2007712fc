package processor

import (
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCacheBytes is the Pebble block cache shared by every partition (flag -cache-mb). It holds data, index and
// filter blocks. Memory budget: RSS under 1 GiB with 10 million visitors, made of this cache, the visitor caches
// (6 partitions x DefaultVisitorCacheBytes = 96 MiB), the memtables (6 x up to 2 x 4 MiB) and the Go heap of the
// batches in flight (about 150 MiB at 5000 records a transaction); the rest of the state is on disk. 32 MiB held
// neither the working set nor the filter blocks: each dedup lookup read its filter block from disk
// (BENCHMARKS.md, ## processor, bench-pipeline).
const DefaultCacheBytes = 256 << 20

// blockCacheCollector exports the block cache's hit rate and size. The cache exists while Run runs; before and
// after, the collector reports nothing.
type blockCacheCollector struct {
	cache             atomic.Pointer[pebble.Cache]
	lookups, sizeDesc *prometheus.Desc
}

func newBlockCacheCollector() *blockCacheCollector {
	return &blockCacheCollector{
		lookups: prometheus.NewDesc("signalstage_processor_block_cache_lookups_total",
			"Pebble block cache lookups (data, index and filter blocks of every partition), by result: hit, miss.",
			[]string{"result"}, nil),
		sizeDesc: prometheus.NewDesc("signalstage_processor_block_cache_bytes",
			"Bytes held by the Pebble block cache (at most -cache-mb).", nil, nil),
	}
}

func (c *blockCacheCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.lookups; ch <- c.sizeDesc }

func (c *blockCacheCollector) Collect(ch chan<- prometheus.Metric) {
	cache := c.cache.Load()
	if cache == nil {
		return
	}
	m := cache.Metrics()
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(m.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(m.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(c.sizeDesc, prometheus.GaugeValue, float64(m.Size))
}
