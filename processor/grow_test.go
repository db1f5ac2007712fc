package processor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestGrowPartitions moves a live deployment from 2 to 5 partitions the documented way (README, Running at
// scale): a processor works on the old topic set; `Grow` copies its rules and signals.raw to a new set in a bulk
// pass while events still arrive on the old one, then a last pass after the old edge stopped; a processor on the
// new set rebuilds the state from the copy, and the rest of the stream goes to the new set only. The new
// signals.resolved, read committed, is exactly the model's output for the whole stream, each (id, version) once:
// visitors held cold before the move are rehydrated by identifies after it, so their state survived. The copy
// holds every old record once, in its key's new partition, in its old order per key, and the mapping rule.
func TestGrowPartitions(t *testing.T) {
	old := testenv.NewKafka(t, 2)
	grown := testenv.NewKafka(t, 5)
	// 80 visitors, 50 events each; every third visitor's identify is its 21st event (index 1600 to 1680), after
	// the move at 1200: the anonymous signals it rehydrates were held by the old processor, and by the new one
	// only if the copy rebuilt its state.
	s := newStream(t, 4000, 80)
	rule := &kgo.Record{Topic: old.Topic(schemas.TopicRules), Key: []byte("t|r1"), Value: []byte("rule bytes")}
	if err := old.Client().ProduceSync(t.Context(), rule).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := GrowConfig{Brokers: old.Brokers, From: old.Topics, To: grown.Topics}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The old deployment at work: a processor with the rules disabled (the rule record is not a real rule).
	noRules := func(c *Config) { c.DisableRules = true }
	p := startProcessor(t, old, t.TempDir(), "old", noRules)
	produce(t, old, s.ins[:800]...)
	// Bulk pass while the old edge still writes.
	res, err := Grow(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Raw != 800 || res.Rules != 1 {
		t.Fatalf("first pass copied %+v, want 800 raw events and 1 rule", res)
	}
	produce(t, old, s.ins[800:1200]...)
	// The old edge stops; the last pass copies what came since and nothing twice.
	if res, err = Grow(ctx, cfg); err != nil || res.Raw != 400 {
		t.Fatalf("last pass: copied %+v, %v; want the 400 raw events since the first", res, err)
	}
	p.stop(t)
	if res, err = Grow(ctx, cfg); err != nil || res.Raw != 0 {
		t.Fatalf("a pass with nothing new: copied %+v, %v; want nothing", res, err)
	}

	// The copy: every record once, each in hash(key) mod 5, per key in the old order.
	byKey := func(k *testenv.Kafka) map[string][]string {
		out := map[string][]string{}
		for _, r := range k.ReadToEnd(k.Topic(schemas.TopicRaw), time.Minute) {
			if k == grown {
				if want := keyPartition(r.Key, 5); r.Partition != want {
					t.Fatalf("key %s in partition %d of the new set, want %d", r.Key, r.Partition, want)
				}
			}
			out[string(r.Key)] = append(out[string(r.Key)], string(r.Value))
		}
		return out
	}
	was, is := byKey(old), byKey(grown)
	if len(was) != len(is) {
		t.Fatalf("%d keys in the old signals.raw, %d in the copy", len(was), len(is))
	}
	for key, vals := range was {
		if !slices.Equal(vals, is[key]) {
			t.Fatalf("key %s: %d records in the old order, %d in the copy, or another order", key, len(vals), len(is[key]))
		}
	}
	rules := grown.ReadToEnd(grown.Topic(schemas.TopicRules), time.Minute)
	if len(rules) != 1 || string(rules[0].Key) != "t|r1" || string(rules[0].Value) != "rule bytes" {
		t.Fatalf("rules in the new set: %v", rules)
	}

	// The new deployment: a processor rebuilds from the copy; the rest of the stream arrives there.
	startProcessor(t, grown, t.TempDir(), "new", noRules)
	produce(t, grown, s.ins[1200:]...)
	checkExactlyOnce(t, grown, s)

	if _, err := Grow(ctx, GrowConfig{Brokers: old.Brokers, From: grown.Topics, To: old.Topics}); !errors.Is(err, ErrGrowConfig) {
		t.Errorf("moving 5 partitions to 2: %v, want ErrGrowConfig", err)
	}
}

// keyPartition is the partition of key among n: what ingest's and the processor's partitioners give.
func keyPartition(key []byte, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: key}, n))
}
