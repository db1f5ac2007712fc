package processor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
	"github.com/signalstage/signalstage/testenv"
)

// rawIn is one event to produce to signals.raw.
type rawIn struct {
	tenant  string
	payload string
}

// edgeRaw is the RawEvent the edge writes for payload received at received: the source as ingest decides it and
// the fields the event contract derives (the edge's own function).
func edgeRaw(t testing.TB, tenant, payload string, received time.Time) *schemas.RawEvent {
	t.Helper()
	source := schemas.SourceWebhook
	if s := contract.Inspect([]byte(payload)); s.Type != nil || s.AnonymousID != nil || s.MessageID != nil {
		source = schemas.SourceSegment
	}
	raw := &schemas.RawEvent{Tenant: tenant, KeyID: "k1", Source: source, ReceivedAt: received.UTC().Truncate(time.Millisecond),
		Payload: []byte(payload)}
	var d contract.Deriver
	if err := d.Derive(raw.Payload, contract.Input{Source: source, ReceivedAt: raw.ReceivedAt}, &raw.EventFields); err != nil {
		t.Fatalf("the edge refuses %s: %v", payload, err)
	}
	return raw
}

// v1Raw is raw as the edge wrote it before the event contract (raw_event.v1): no derived fields.
func v1Raw(raw *schemas.RawEvent) *schemas.RawEvent {
	return &schemas.RawEvent{Tenant: raw.Tenant, KeyID: raw.KeyID, Source: raw.Source, ReceivedAt: raw.ReceivedAt,
		RequestID: raw.RequestID, Payload: raw.Payload}
}

// routingID is the id the edge keys payload's record by (the contract's routing id).
func routingID(t testing.TB, payload string) string {
	t.Helper()
	return contract.RoutingID(&edgeRaw(t, "t", payload, time.Now()).EventFields)
}

// rawRecord is the signals.raw record the edge writes for in: raw_event.v2, keyed by the contract's routing id.
func rawRecord(t testing.TB, k *testenv.Kafka, in rawIn) *kgo.Record {
	t.Helper()
	raw := edgeRaw(t, in.tenant, in.payload, time.Now())
	return &kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: schemas.RoutingKey(in.tenant, contract.RoutingID(&raw.EventFields)),
		Value: schemas.AppendRawEvent(nil, raw)}
}

// rawEventV1 is RawEvent as raw_event.v1 declares it: what the edge wrote before the event contract.
type rawEventV1 struct {
	Tenant     string    `avro:"tenant"`
	KeyID      string    `avro:"key_id"`
	Source     string    `avro:"source"`
	ReceivedAt time.Time `avro:"received_at"`
	RequestID  string    `avro:"request_id"`
	Payload    []byte    `avro:"payload"`
}

// rawEventsV1 is the codec of raw_event.v1 alone (read from the repository when a test first needs it).
var rawEventsV1 = sync.OnceValues(func() (*schemas.Codec[rawEventV1], error) {
	src, err := os.ReadFile("../schemas/avsc/raw_event.v1.avsc")
	if err != nil {
		return nil, err
	}
	return schemas.NewCodec[rawEventV1]("raw_event", string(src))
})

// encodeV1 is raw as a raw_event.v1 record.
func encodeV1(t testing.TB, raw *schemas.RawEvent) []byte {
	t.Helper()
	codec, err := rawEventsV1()
	if err != nil {
		t.Fatal(err)
	}
	b, err := codec.Encode(&rawEventV1{Tenant: raw.Tenant, KeyID: raw.KeyID, Source: raw.Source,
		ReceivedAt: raw.ReceivedAt, RequestID: raw.RequestID, Payload: raw.Payload})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// produceV1 writes events to signals.raw as the edge did before the event contract (raw_event.v1, no source,
// keyed by anonymousId, else userId, else messageId).
func produceV1(t testing.TB, k *testenv.Kafka, ins ...rawIn) {
	t.Helper()
	for _, in := range ins {
		raw := &schemas.RawEvent{Tenant: in.tenant, KeyID: "k1", ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
			Payload: []byte(in.payload)}
		id := "none"
		s := contract.Inspect(raw.Payload)
		for _, v := range [][]byte{s.AnonymousID, s.UserID, s.MessageID} {
			if text, ok := contract.IDText(v); ok && len(text) > 0 {
				id = string(text)
				break
			}
		}
		rec := &kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: schemas.RoutingKey(in.tenant, id), Value: encodeV1(t, raw)}
		if err := k.Client().ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatalf("producing v1 raw events: %v", err)
		}
	}
}

// produce writes events to signals.raw, synchronously, with the default (Kafka-compatible) partitioner.
func produce(t testing.TB, k *testenv.Kafka, ins ...rawIn) {
	t.Helper()
	cl := k.Client()
	recs := make([]*kgo.Record, len(ins))
	for i, in := range ins {
		recs[i] = rawRecord(t, k, in)
	}
	for i := 0; i < len(recs); i += 5000 {
		if err := cl.ProduceSync(context.Background(), recs[i:min(i+5000, len(recs))]...).FirstErr(); err != nil {
			t.Fatalf("producing raw events: %v", err)
		}
	}
}

type running struct {
	p      *Processor
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned; err is set then
	err    error
}

// stop cancels the processor and waits for Run to return, failing the test on an error.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("processor: %v", r.err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("processor did not stop")
	}
}

// startProcessor runs an in-process processor on k's topics; mod adjusts its config.
func startProcessor(t testing.TB, k *testenv.Kafka, stateDir, txnID string, mod func(*Config)) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{
		Brokers: k.Brokers, Topics: k.Topics, StateDir: stateDir, TransactionalID: k.Prefix + txnID,
		Registry: reg, Gatherer: reg,
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: testLogLevel()})),
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("new processor: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{p: p, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		err := p.Run(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "processor %s: Run: %v\n", txnID, err)
		}
		r.err = err
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// readSignals reads signals.resolved read committed from the start until want records or timeout.
func readSignals(t testing.TB, k *testenv.Kafka, want int, timeout time.Duration) []schemas.Signal {
	t.Helper()
	return decodeSignals(t, k.ReadAll(k.Topic(schemas.TopicResolved), want, timeout))
}

func decodeSignals(t testing.TB, recs []*kgo.Record) []schemas.Signal {
	t.Helper()
	out := make([]schemas.Signal, len(recs))
	for i, r := range recs {
		if err := schemas.Signals.Decode(r.Value, &out[i]); err != nil {
			t.Fatalf("decoding signal at %d/%d: %v", r.Partition, r.Offset, err)
		}
	}
	return out
}

// settle reads signals until want arrived (waiting while their count grows, failing once it stopped growing for
// settleStall), waits quiet for anything extra to be committed, then returns every signal committed by then (read
// to the topic's end offsets, not until a read goes idle, which on a loaded machine can happen before the
// consumer has fetched anything). A short read reports, per partition of signals.raw, the group's committed
// offset against the high watermark and the partition's owner, twice 30 s apart, and the count after that time:
// whether the missing signals were late or stuck.
func settle(t testing.TB, k *testenv.Kafka, want int, quiet time.Duration) []schemas.Signal {
	t.Helper()
	start := time.Now()
	if n, stalled := countSignalsProgress(t, k, want, settleStall); n < want {
		group := k.Prefix + "processor"
		first := inputReport(t, k, group)
		time.Sleep(30 * time.Second)
		later := len(k.ReadToEnd(k.Topic(schemas.TopicResolved), 2*time.Minute))
		t.Fatalf("got %d signals in %s, want at least %d: none new for the last %s. %s. 30 s later: %d signals; %s",
			n, time.Since(start).Round(time.Second), want, stalled.Round(time.Second), first, later, inputReport(t, k, group))
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Logf("settle: %d signals took %s (still arriving, so waited for)", want, d.Round(time.Second))
	}
	time.Sleep(quiet)
	return decodeSignals(t, k.ReadToEnd(k.Topic(schemas.TopicResolved), 2*time.Minute))
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
		}
	}
	return 0
}

func track(anon, user, event string, extra string) string {
	return fmt.Sprintf(`{"type":"track","anonymousId":%q,"userId":%q,"event":%q,"messageId":"m-%s-%s"%s}`,
		anon, user, event, anon+user, event, extra)
}

// testLogLevel is warn unless PROCESSOR_TEST_LOG names another level (debugging a failing test).
func testLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("PROCESSOR_TEST_LOG"))); err != nil {
		return slog.LevelWarn
	}
	return l
}
