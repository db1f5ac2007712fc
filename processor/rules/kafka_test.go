package rules

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// startWatcher runs a Watcher on the test's rules topic until the test ends and waits until it is ready.
func startWatcher(t *testing.T, k *testenv.Kafka, reg ...prometheus.Registerer) *Watcher {
	t.Helper()
	cfg := WatcherConfig{Brokers: k.Brokers, Topic: k.Topic(schemas.TopicRules)}
	if len(reg) > 0 {
		cfg.Registerer = reg[0]
	}
	w, err := NewWatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher Run: %v", err)
		}
	})
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("watcher stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("watcher not ready after 30s")
	}
	return w
}

// eventually polls cond until it holds or 20 s pass (a generous bound on "within seconds", not a timing claim).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWatchersSeeChangesAndDeletes(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	topic := k.Topic(schemas.TopicRules)
	pub := NewPublisher(k.Client(), topic)
	ctx := context.Background()

	// One rule exists before the watchers start: Ready must mean it is in effect.
	pre := validRule()
	pre.ID = "pre-existing"
	pre.Match.Event = "Signed Up"
	if err := pub.Apply(ctx, pre); err != nil {
		t.Fatal(err)
	}
	w1, w2 := startWatcher(t, k), startWatcher(t, k)
	for i, w := range []*Watcher{w1, w2} {
		if _, ok := w.Set().Rule("acme", "pre-existing"); !ok {
			t.Fatalf("watcher %d ready without the rule that existed at start", i+1)
		}
	}

	ev := &Event{Source: "segment", Type: "track", Name: "Form Submitted",
		Payload: payload(t, `{"properties":{"form_name":"demo","email":"Jane@Example.com"}}`)}
	r := validRule()
	if err := pub.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	for i, w := range []*Watcher{w1, w2} {
		eventually(t, "rule applied on watcher", func() bool {
			got, ok := w.Set().Match("acme", ev)
			return ok && got.RuleID == "demo" && got.Signal == "Demo Requested" && got.Email == "jane@example.com"
		})
		t.Logf("watcher %d maps the event", i+1)
	}

	r.Signal = "Demo Requested v2"
	if err := pub.Apply(ctx, r); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*Watcher{w1, w2} {
		eventually(t, "rule change reaches watcher", func() bool {
			got, _ := w.Set().Match("acme", ev)
			return got.Signal == "Demo Requested v2"
		})
	}

	if err := pub.Delete(ctx, "acme", "demo"); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*Watcher{w1, w2} {
		eventually(t, "deleted rule stops applying", func() bool {
			_, ok := w.Set().Match("acme", ev)
			return !ok
		})
		if _, ok := w.Set().Rule("acme", "pre-existing"); !ok {
			t.Fatal("deleting one rule lost another")
		}
	}

	// A late watcher reads the compacted history (update, tombstone) to the same state.
	s, err := Snapshot(ctx, WatcherConfig{Brokers: k.Brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Rule("acme", "demo"); ok || s.Len() != 1 {
		t.Fatalf("snapshot has %d rules (%v), want only pre-existing", s.Len(), s.Tenants())
	}
}

func TestWatcherSkipsBadRecords(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	topic := k.Topic(schemas.TopicRules)
	cl := k.Client()
	ctx := context.Background()

	bad := validRule()
	bad.ID = "bad"
	bad.Match.Conditions[0].Op = "equals" // bypasses Publisher's validation
	badValue, err := schemas.MappingRules.Encode(bad.Record())
	if err != nil {
		t.Fatal(err)
	}
	good := validRule()
	goodValue, _ := schemas.MappingRules.Encode(good.Record())
	err = cl.ProduceSync(ctx,
		&kgo.Record{Topic: topic, Key: []byte("acme|garbage"), Value: []byte("not avro")},
		&kgo.Record{Topic: topic, Key: bad.Key(), Value: badValue},
		&kgo.Record{Topic: topic, Key: []byte("acme|wrong-key"), Value: goodValue},
		&kgo.Record{Topic: topic, Key: good.Key(), Value: goodValue},
	).FirstErr()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := startWatcher(t, k, reg)
	s := w.Set()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "signalstage_processor_rules_regex_budget_exhausted_total" {
			continue // process-wide, other tests move it
		}
		m := mf.GetMetric()[0]
		got[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	want := map[string]float64{"signalstage_processor_rules_loaded": 1, "signalstage_processor_rules_swaps_total": 1,
		// the garbage record, the invalid rule, the record under the wrong key
		"signalstage_processor_rules_invalid_total": 3}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("metrics %v, want %v", got, want)
	}
	if s.Len() != 1 {
		t.Fatalf("set has %d rules, want only the good one", s.Len())
	}
	if _, ok := s.Rule("acme", "demo"); !ok {
		t.Fatal("good rule missing")
	}
}

func TestWatcherEmptyTopicIsReady(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	w := startWatcher(t, k)
	if w.Set().Len() != 0 {
		t.Fatal("rules from nowhere")
	}
}
