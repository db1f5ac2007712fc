package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestTwoInstancesJoinAndLeave: a second instance joins mid-stream (taking half the partitions and their state
// from the changelog) and later the first leaves (its partitions move back with their state); the output is
// exactly once and exactly the model's.
func TestTwoInstancesJoinAndLeave(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	s := newStream(t, 12_000, 300)
	small := func(c *Config) { c.MaxPollRecords = 300 }
	produce(t, k, s.ins[:3000]...)
	a := startProcessor(t, k, t.TempDir(), "a", small)
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 1500, 60*time.Second); len(got) < 1500 {
		t.Fatalf("only %d signals before the join", len(got))
	}
	b := startProcessor(t, k, t.TempDir(), "b", small)
	produce(t, k, s.ins[3000:7000]...)
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 6000, 60*time.Second); len(got) < 6000 {
		t.Fatalf("only %d signals before the leave", len(got))
	}
	a.stop(t)
	produce(t, k, s.ins[7000:]...)
	checkExactlyOnce(t, k, s)
	if ra, rb := counterValue(t, a.reg, "signalstage_processor_records_total", map[string]string{"topic": "raw"}),
		counterValue(t, b.reg, "signalstage_processor_records_total", map[string]string{"topic": "raw"}); ra == 0 || rb == 0 {
		t.Errorf("records processed: a %v, b %v; want both to have worked", ra, rb)
	}
	b.stop(t)
}

// TestReplayReproducesIDs: after `processor replay` rewinds the group, the same events come out again with the
// same ids, one version up, and none is dropped as a duplicate; a genuine redelivery inside the range stays a
// duplicate.
func TestReplayReproducesIDs(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	var ins []rawIn
	for i := range 300 {
		ins = append(ins, rawIn{"t", fmt.Sprintf(`{"type":"track","anonymousId":"v%d","event":"E","messageId":"m%d"}`, i%20, i)})
	}
	ins = append(ins, ins[5]) // a redelivery
	produce(t, k, ins...)
	dir := t.TempDir()
	r := startProcessor(t, k, dir, "p", nil)
	first := settle(t, k, 300, 2*time.Second)
	if len(first) != 300 {
		t.Fatalf("first run: %d signals, want 300", len(first))
	}
	r.stop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var offs map[int32]int64
	var err error
	for range 20 { // the group may still show the stopped member for a moment
		offs, err = Replay(ctx, ReplayConfig{Brokers: k.Brokers, Topics: k.Topics, UseOffset: true, FromOffset: 0})
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil || len(offs) != 3 {
		t.Fatalf("replay: %v %v", offs, err)
	}
	r = startProcessor(t, k, dir, "p", nil)
	all := settle(t, k, 600, 3*time.Second)
	if len(all) != 600 {
		t.Fatalf("after replay: %d signals, want 600", len(all))
	}
	versions := map[string][]int64{}
	for _, s := range all {
		versions[s.SignalID] = append(versions[s.SignalID], versionCount(s.Version))
	}
	for _, s := range first {
		v := versions[s.SignalID]
		if len(v) != 2 || v[0] != 1 || v[1] != 2 {
			t.Errorf("signal %s versions %v, want [1 2]", s.SignalID[:8], v)
		}
	}
	if v := counterValue(t, r.reg, "signalstage_processor_duplicates_total", nil); v != 1 {
		t.Errorf("duplicates in the replay = %v, want 1 (the redelivery)", v)
	}
	if v := counterValue(t, r.reg, "signalstage_processor_reemitted_total", nil); v != 300 {
		t.Errorf("re-emitted = %v, want 300", v)
	}
	r.stop(t)
}

// TestTwoInstancesCrossPartitionLinks: the same join-and-leave, with userId links crossing partitions (and so,
// at times, instances): checked by the invariants of checkFinal.
func TestTwoInstancesCrossPartitionLinks(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	ins, want := crossStream(t)
	small := func(c *Config) { c.MaxPollRecords = 300 }
	produce(t, k, ins[:2000]...)
	a := startProcessor(t, k, t.TempDir(), "a", small)
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 1000, 60*time.Second); len(got) < 1000 {
		t.Fatalf("only %d signals before the join", len(got))
	}
	b := startProcessor(t, k, t.TempDir(), "b", small)
	produce(t, k, ins[2000:4000]...)
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 3000, 60*time.Second); len(got) < 3000 {
		t.Fatalf("only %d signals before the leave", len(got))
	}
	a.stop(t)
	produce(t, k, ins[4000:]...)
	checkFinal(t, k, want)
	b.stop(t)
}
