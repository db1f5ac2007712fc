package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// metrics of the edge, all prefixed signalstage_ingest_.
type metrics struct {
	requests      *prometheus.CounterVec   // route, code
	events        *prometheus.CounterVec   // tenant, source, type, outcome
	produce       prometheus.Histogram     // seconds from first enqueue to last ack of a request
	requestBytes  *prometheus.HistogramVec // route
	inFlight      prometheus.Gauge
	keyReloads    *prometheus.CounterVec // result
	usagePublish  *prometheus.CounterVec // result
	limitRejected *prometheus.CounterVec // tenant
	quotaRejected *prometheus.CounterVec // quota: in_flight, memory
	slowBodies    prometheus.Counter
	// partialSignatures counts batches whose X-Signature covers only their first event (the destination's scheme).
	partialSignatures prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, cl *kgo.Client, memUsed func() float64) *metrics {
	const ns, sub = "signalstage", "ingest"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_total", Help: "Events by tenant, source, type and outcome (accepted, rejected)."},
			[]string{"tenant", "source", "type", "outcome"}),
		produce: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "produce_seconds", Help: "Time from enqueueing a request's records to Kafka acknowledging all of them.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		requestBytes: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "request_bytes", Help: "Request body size after decompression.",
			Buckets: prometheus.ExponentialBuckets(128, 4, 8)}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "in_flight_requests", Help: "Requests being served."}),
		keyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "key_registry_reloads_total", Help: "Key registry reloads by result (changed, unchanged, error)."},
			[]string{"result"}),
		usagePublish: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "usage_publish_total", Help: "Publications of this replica's monthly counts by result."},
			[]string{"result"}),
		limitRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "monthly_limit_rejections_total", Help: "Requests refused with 429 by tenant."}, []string{"tenant"}),
	}
	m.quotaRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "key_quota_rejections_total", Help: "Requests refused with 503 because their key used up its share (in_flight, memory)."},
		[]string{"quota"})
	m.slowBodies = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "slow_bodies_total", Help: "Requests refused with 503 because the body arrived slower than -min-body-rate."})
	m.partialSignatures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "partial_signatures_total", Help: "Batches accepted on an X-Signature that covers only their first event."})
	reg.MustRegister(m.quotaRejected, m.slowBodies, m.partialSignatures)
	reg.MustRegister(m.requests, m.events, m.produce, m.requestBytes, m.inFlight, m.keyReloads, m.usagePublish,
		m.limitRejected,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "request_memory_bytes", Help: "Memory reserved by the requests being served (bounded by -max-request-memory)."},
			memUsed),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "producer_buffered_records", Help: "Records buffered in the producer, not yet acknowledged."},
			func() float64 { return float64(cl.BufferedProduceRecords()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "producer_buffered_bytes", Help: "Bytes buffered in the producer, not yet acknowledged."},
			func() float64 { return float64(cl.BufferedProduceBytes()) }),
	)
	return m
}
