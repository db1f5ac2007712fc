package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// rawIn is one event to produce to signals.raw.
type rawIn struct {
	tenant  string
	payload string
}

// routingID mirrors ingest's key choice: anonymousId, else userId, else messageId.
func routingID(payload string) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(payload), &m)
	for _, f := range []string{"anonymousId", "userId", "messageId"} {
		if s, ok := m[f].(string); ok && s != "" {
			return s
		}
	}
	return "none"
}

func rawRecord(t testing.TB, k *testenv.Kafka, in rawIn) *kgo.Record {
	t.Helper()
	b, err := schemas.RawEvents.Encode(&schemas.RawEvent{Tenant: in.tenant, KeyID: "k1", Source: "",
		ReceivedAt: time.Now().UTC(), Payload: []byte(in.payload)})
	if err != nil {
		t.Fatalf("encoding raw event: %v", err)
	}
	return &kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: schemas.RoutingKey(in.tenant, routingID(in.payload)), Value: b}
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

// settle reads signals until want arrived, waits quiet for anything extra to be committed, then returns every
// signal committed by then (read to the topic's end offsets, not until a read goes idle, which on a loaded machine
// can happen before the consumer has fetched anything).
func settle(t testing.TB, k *testenv.Kafka, want int, quiet time.Duration) []schemas.Signal {
	t.Helper()
	got := readSignals(t, k, want, 60*time.Second)
	if len(got) < want {
		t.Fatalf("got %d signals, want at least %d", len(got), want)
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
