package sink_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// env is one test's real Kafka topics and ClickHouse database.
type env struct {
	t  *testing.T
	k  *testenv.Kafka
	ch *testenv.ClickHouse
	// stops are the stop functions of the sinks start ran, for stopAll.
	stops []func()
}

// stopAll stops every sink start ran (each waits for its Run).
func (e *env) stopAll() {
	for _, stop := range e.stops {
		stop()
	}
	e.stops = nil
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, k: testenv.NewKafka(t, 3), ch: testenv.NewClickHouse(t)}
}

func (e *env) config() sink.Config {
	return sink.Config{
		Brokers:        e.k.Brokers,
		Topics:         e.k.Topics,
		ClickHouseAddr: e.ch.Addr,
		Database:       e.ch.Database,
		FlushInterval:  200 * time.Millisecond,
		RetryMax:       time.Second,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// start runs a sink with cfg until the returned stop is called (or the test ends); stop waits for Run.
func (e *env) start(cfg sink.Config) (stop func()) {
	e.t.Helper()
	s, err := sink.New(cfg)
	if err != nil {
		e.t.Fatalf("sink.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("sink.Run: %v", err)
		}
	}
	e.t.Cleanup(stop)
	e.stops = append(e.stops, stop)
	return stop
}

// produce writes records synchronously.
func (e *env) produce(recs ...*kgo.Record) {
	e.t.Helper()
	cl := e.k.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatalf("producing: %v", err)
	}
}

func (e *env) signalRecord(s schemas.Signal) *kgo.Record {
	e.t.Helper()
	b, err := schemas.Signals.Encode(&s)
	if err != nil {
		e.t.Fatalf("encoding signal: %v", err)
	}
	id := s.AnonymousID
	if id == "" {
		id = s.UserID
	}
	return &kgo.Record{Topic: e.k.Topic(schemas.TopicResolved), Key: schemas.RoutingKey(s.Tenant, id), Value: b}
}

func (e *env) identityRecord(l schemas.IdentityLink) *kgo.Record {
	e.t.Helper()
	b, err := schemas.IdentityLinks.Encode(&l)
	if err != nil {
		e.t.Fatalf("encoding identity: %v", err)
	}
	return &kgo.Record{Topic: e.k.Topic(schemas.TopicIdentities), Key: schemas.RoutingKey(l.Tenant, l.ID), Value: b}
}

func (e *env) deadLetterRecord(d schemas.DeadLetter) *kgo.Record {
	e.t.Helper()
	b, err := schemas.DeadLetters.Encode(&d)
	if err != nil {
		e.t.Fatalf("encoding dead letter: %v", err)
	}
	return &kgo.Record{Topic: e.k.Topic(schemas.TopicDLQ), Key: d.Key, Value: b}
}

// uint64Of runs a query returning one number.
func (e *env) uint64Of(query string, args ...any) (uint64, error) {
	var n uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := e.ch.Conn.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// count runs a query returning one number and fails the test on error.
func (e *env) count(query string, args ...any) uint64 {
	e.t.Helper()
	n, err := e.uint64Of(query, args...)
	if err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitCount waits until query returns want (errors such as a table the sink has not created yet count as not
// yet), and fails the test with the last value after timeout.
func (e *env) waitCount(want uint64, timeout time.Duration, query string, args ...any) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var got uint64
	var err error
	for {
		got, err = e.uint64Of(query, args...)
		if (err == nil && got == want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || got != want {
		e.t.Fatalf("%s = %d (err %v), want %d", query, got, err, want)
	}
}

// waitCommitted waits until the group's committed offsets on topic sum to want.
func (e *env) waitCommitted(topic string, want int64, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := e.committed(topic)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("committed offsets of %s sum to %d, want %d", topic, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// committed returns the group's committed offsets summed over the partitions of topic.
func (e *env) committed(topic string) int64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := e.k.Admin.FetchOffsets(ctx, sink.Group(e.k.Prefix))
	if err != nil {
		e.t.Fatalf("fetching offsets: %v", err)
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			sum += o.At
		}
	})
	return sum
}

// signal returns a linked track signal number i of tenant with fixed times.
func signal(tenant string, i int) schemas.Signal {
	at := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return schemas.Signal{
		Tenant: tenant, SignalID: fmt.Sprintf("sig-%05d", i), Version: 1, Status: schemas.StatusCold,
		Source: schemas.SourceSegment, Type: "track", Event: "Clicked", MessageID: fmt.Sprintf("m-%05d", i),
		AnonymousID: fmt.Sprintf("anon-%d", i%10), Properties: `{"button":"buy"}`, Traits: "{}",
		EventTime: at, ReceivedAt: at.Add(time.Second), ProcessedAt: at.Add(2 * time.Second),
		RawPartition: int32(i % 3), RawOffset: int64(i), Payload: []byte(`{"type":"track","event":"Clicked"}`),
	}
}

// signalRecords returns signal records of tenant acme numbered from to to-1.
func (e *env) signalRecords(from, to int) []*kgo.Record {
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, e.signalRecord(signal("acme", i)))
	}
	return recs
}

// waitPaused waits until the sink has failed at least minErrors inserts and paused fetching, as it must while
// ClickHouse is unreachable.
func waitPaused(t *testing.T, reg *prometheus.Registry, minErrors float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for metric(t, reg, "signalstage_sink_insert_errors_total") < minErrors || metric(t, reg, "signalstage_sink_fetch_paused") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no failing inserts with paused fetching: errors=%v paused=%v",
				metric(t, reg, "signalstage_sink_insert_errors_total"), metric(t, reg, "signalstage_sink_fetch_paused"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
