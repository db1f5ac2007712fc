// Package ingest is the HTTP edge of signalstage: it accepts Segment events (the webhook destination and the
// Segment HTTP Tracking API), authenticates them against the key registry, and writes each event as a RawEvent to
// signals.raw, answering only after Kafka acknowledged every record.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
	"github.com/signalstage/signalstage/schemas/kafkaconn"
	"github.com/signalstage/signalstage/schemas/pprofhttp"
)

// producer is the one method of the Kafka client the handler uses: the seam where the handler benchmark swaps in
// an immediate acknowledgement.
type producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Server is the ingest edge. Build it with New and serve with Run.
type Server struct {
	cfg      Config
	log      *slog.Logger
	keys     *registry
	cl       *kgo.Client
	prod     producer // cl, except in benchmarks that measure the handler alone
	m        *metrics
	usage    *usage
	quotas   quotas
	router   *mux.Router
	rawTopic string
	dlqTopic string
	// reg and rawHeader are set by Run before it serves when a registry is configured: records are then framed
	// for it (nil: single-object encoding).
	reg       *schemas.Registry
	rawHeader []byte
	idPrefix  string
	reqSeq    atomic.Uint64
	inFlight  atomic.Int64
	memUsed   atomic.Int64 // bytes reserved by requests being served (see reserve)
	draining  atomic.Bool
	serving   atomic.Bool // the public listener serves
	// lastReloadErr is only touched by watchKeys' goroutine (and ReloadKeys callers, serialised by it).
	lastReloadErr string
}

// New validates cfg, loads the key registry and creates the Kafka producer (it does not connect yet).
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.keys = &registry{path: cfg.KeysFile, quotas: &s.quotas}
	if _, err := s.keys.reload(); err != nil {
		return nil, fmt.Errorf("-keys: %w", err)
	}
	topics := schemas.Config{Prefix: cfg.TopicPrefix}
	s.rawTopic, s.dlqTopic = topics.Name(schemas.TopicRaw), topics.Name(schemas.TopicDLQ)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		// Idempotent (the default) with acks=all: an acknowledged record is on every in-sync replica.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(cfg.MaxBufferedRecords),
		kgo.MaxBufferedBytes(cfg.MaxBufferedBytes),
		kgo.ProducerLinger(cfg.Linger),
		// Records whose request already got 503 should not linger forever behind a dead broker.
		kgo.RecordDeliveryTimeout(cfg.ProduceTimeout + 30*time.Second),
		kgo.ProducerBatchCompression(kgo.Lz4Compression(), kgo.NoCompression()),
	}
	opts = append(opts, cfg.KafkaConnOpts...)
	cl, err := kgo.NewClient(append(opts, cfg.KafkaOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("-brokers: creating kafka client: %w", err)
	}
	s.cl, s.prod = cl, cl
	s.m = newMetrics(cfg.Registry, cl, func() float64 { return float64(s.memUsed.Load()) })
	s.usage = newUsage(s.log, cl, topics.Name(TopicUsage), cfg.ReplicaID, s.m)
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.idPrefix = hex.EncodeToString(b[:]) + "-"
	s.router = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of every route (what Run serves).
func (s *Server) Handler() http.Handler { return s.router }

func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	// The Webhooks (Actions) destination sends POST, PUT or PATCH, as the mapping says.
	r.Handle("/api/signal-staging/webhook/{apiKey}",
		s.handler(&route{name: "webhook", maxBytes: int64(s.cfg.MaxWebhookRequestBytes)})).
		Methods(http.MethodPost, http.MethodPut, http.MethodPatch)
	// The Tracking API: the long routes (server libraries) and the short ones analytics.js, analytics-kotlin
	// and analytics-swift use (/v1/t, /v1/b, ...); every type's initial is distinct.
	v1 := int64(s.cfg.MaxRequestBytes)
	for _, t := range contract.SegmentTypes {
		h := s.handler(&route{name: "v1_" + t, impliedType: t, segmentOnly: true, basicAuth: true, maxBytes: v1})
		r.Handle("/v1/"+t, h).Methods(http.MethodPost)
		r.Handle("/v1/"+t[:1], h).Methods(http.MethodPost)
	}
	batch := s.handler(&route{name: "v1_batch", segmentOnly: true, basicAuth: true, maxBytes: v1})
	for _, p := range []string{"/v1/batch", "/v1/b", "/v1/import"} {
		r.Handle(p, batch).Methods(http.MethodPost)
	}
	r.PathPrefix("/v1/").Methods(http.MethodOptions).HandlerFunc(s.preflight)
	// /healthz and /readyz stay on the public listener too, for load balancers that check the port they route to;
	// its /readyz says only "not ready": why (Kafka's error text: broker addresses, TLS and SASL details) is for
	// the admin listener.
	r.HandleFunc("/healthz", healthz)
	r.HandleFunc("/readyz", s.publicReadyz)
	if !s.hasAdmin() {
		r.Handle("/metrics", s.metricsHandler())
	}
	return r
}

func healthz(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }

func (s *Server) hasAdmin() bool { return s.cfg.AdminAddr != "" || s.cfg.AdminListener != nil }

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})
}

// AdminHandler returns the operator routes: /metrics, /healthz, /readyz and /debug/pprof/ (loopback peers only,
// see schemas/pprofhttp): what the admin listener serves.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metricsHandler())
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/readyz", s.readyz)
	mux.Handle(pprofhttp.Prefix, pprofhttp.Handler(""))
	return mux
}

// serveAdmin starts the admin listener; the returned function closes it.
func (s *Server) serveAdmin() (func(), error) {
	if !s.hasAdmin() {
		return func() {}, nil
	}
	ln := s.cfg.AdminListener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.AdminAddr); err != nil {
			return nil, fmt.Errorf("-admin-addr: %w", err)
		}
	}
	srv := &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	s.log.Info("admin listening", "addr", ln.Addr().String(), "routes", "/metrics /healthz /readyz /debug/pprof/")
	return func() { _ = srv.Close() }, nil
}

// readyz answers 200 when the key registry is loaded, the server is not draining, and Kafka answers; else 503
// with the reason.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if problem := s.notReady(r.Context()); problem != "" {
		http.Error(w, problem, http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// publicReadyz is readyz without the reason.
func (s *Server) publicReadyz(w http.ResponseWriter, r *http.Request) {
	if s.notReady(r.Context()) != "" {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// notReady returns why the edge is not ready, or "".
func (s *Server) notReady(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var problem string
	switch {
	case !s.serving.Load():
		problem = "starting"
	case s.draining.Load():
		problem = "shutting down"
	case !s.keys.loaded():
		problem = "key registry not loaded"
	default:
		if err := s.cl.Ping(ctx); err != nil {
			problem = "kafka unreachable: " + err.Error()
		}
	}
	return problem
}

// useRegistry connects to the schema registry and registers the schemas the edge writes, so that every record
// from now on is written in the registry wire format.
func (s *Server) useRegistry(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	reg, err := schemas.NewRegistry(rctx, s.cfg.SchemaRegistry)
	if err != nil {
		return err
	}
	if err := reg.Register(rctx, s.rawTopic, schemas.RawEvents); err != nil {
		return err
	}
	if err := reg.Register(rctx, s.dlqTopic, schemas.DeadLetters); err != nil {
		return err
	}
	hdr, err := reg.Header(schemas.RawEvents)
	if err != nil {
		return err
	}
	s.reg, s.rawHeader = reg, hdr
	s.log.Info("writing the schema registry wire format", "registry", reg.URL())
	return nil
}

// Run creates the topics, serves HTTP until ctx is done, then drains: it stops accepting, finishes in-flight
// requests, flushes the producer and closes it. It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	defer s.cl.Close()
	// The admin listener first: /healthz and /metrics answer while the topics are made and usage is read.
	closeAdmin, err := s.serveAdmin()
	if err != nil {
		return err
	}
	defer closeAdmin()
	ensureCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	res, err := schemas.Config{Prefix: s.cfg.TopicPrefix, Partitions: s.cfg.Partitions,
		Replication: s.cfg.Replication}.Ensure(ensureCtx, kadm.NewClient(s.cl))
	res.Log(s.log)
	if err == nil {
		err = ensureUsageTopic(ensureCtx, s.log, kadm.NewClient(s.cl), s.usage.topic, s.cfg.Replication)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("ensuring topics: %w", kafkaconn.Explain(err))
	}
	if s.cfg.SchemaRegistry != "" {
		if err := s.useRegistry(ctx); err != nil {
			return fmt.Errorf("-schema-registry: %w", err)
		}
	}

	// Background parts stop when bg is canceled, after the HTTP server drained.
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	usageDone := make(chan error, 1)
	caughtUp := make(chan struct{})
	go func() {
		usageDone <- s.usage.run(bg, append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...)}, s.cfg.KafkaConnOpts...), s.cfg.UsageInterval, caughtUp)
	}()
	select {
	case <-caughtUp:
	case err := <-usageDone:
		return fmt.Errorf("reading usage: %w", err)
	case <-time.After(30 * time.Second):
		s.log.Warn("usage topic not caught up after 30s; serving with partial counts")
	case <-ctx.Done():
		return nil
	}
	go s.watchKeys(bg, notifyHUP())

	ln := s.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("-addr: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	s.serving.Store(true)
	s.log.Info("ingest listening", "addr", ln.Addr().String(), "raw_topic", s.rawTopic)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	err = s.shutdown(srv)
	stopBG()
	if uerr := <-usageDone; uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

func (s *Server) shutdown(srv *http.Server) error {
	start := time.Now()
	s.draining.Store(true)
	if s.cfg.DrainGrace > 0 {
		// Requests keep being served while load balancers see /readyz answer 503 and stop routing here.
		s.log.Info("draining: /readyz answers 503, still serving", "grace", s.cfg.DrainGrace.String())
		time.Sleep(s.cfg.DrainGrace)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown closes the listener, then waits for in-flight requests, which wait for their acks.
	httpErr := srv.Shutdown(ctx)
	s.usage.publish(ctx)
	flushErr := s.cl.Flush(ctx)
	s.log.Info("ingest stopped", "took", time.Since(start).String())
	if err := errors.Join(httpErr, flushErr); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}
