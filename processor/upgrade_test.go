package processor

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
	"github.com/signalstage/signalstage/testenv"
)

// TestUpgradeFromLegacyState runs the processor on the state a processor from before the event contract left
// in the changelog (a dedup entry and a held signal, keyed by legacy ids), on the real broker, and sends what
// straddles the upgrade: the retry of an event first processed before it is a duplicate, and a signal held
// before it is rehydrated under the id it was emitted with, one version up (one ClickHouse row, not two).
func TestUpgradeFromLegacyState(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	cfg := Config{Topics: k.Topics}
	if _, err := schemas.EnsureTopics(context.Background(), k.Admin, k.Topics.Replication, cfg.internalSpecs()...); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	retried := `{"type":"track","anonymousId":"a1","event":"Demo Requested","messageId":"m-a1","properties":{"n":1.50}}`
	held := `{"type":"page","anonymousId":"b1","messageId":"m-b1","properties":{"name":"Pricing"}}`
	idA, _ := contract.LegacySignalID([]byte(retried))
	idB, _ := contract.LegacySignalID([]byte(held))
	part := func(id string) int32 { return partitionOfKey(schemas.RoutingKey("t", id), 3) }
	pinA := pinned{set: true, EventTimeMs: before.UnixMilli(), Source: schemas.SourceSegment, Type: "track", Event: "Demo Requested"}
	pinB := pinned{set: true, EventTimeMs: before.UnixMilli(), Source: schemas.SourceSegment, Type: "page", Event: "Pricing"}
	b1 := visitor{schemas.IDKindAnonymous, "b1"}
	old := []*kgo.Record{
		{Partition: part("a1"), Key: dedupKey("t", idA), Value: dedupEntry{FirstSeenMs: before.UnixMilli(), Offset: 990, Version: 1, First: pinA}.encode()},
		{Partition: part("b1"), Key: dedupKey("t", idB), Value: dedupEntry{FirstSeenMs: before.UnixMilli(), Offset: 991, Version: 1, First: pinB}.encode()},
		{Partition: part("b1"), Key: counterKey("t", b1), Value: heldCounter{First: 0, Next: 1}.encode()},
		{Partition: part("b1"), Key: heldKey("t", b1, 0), Value: heldSignal{HeldAtMs: before.UnixMilli(), Version: 1,
			Key: schemas.RoutingKey("t", "b1"), Source: schemas.SourceSegment, ReceivedAtMs: before.UnixMilli(),
			Partition: part("b1"), Offset: 991, Payload: []byte(held), First: pinB}.encode()},
	}
	cl := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range old {
		r.Topic = k.Topic(TopicChangelog)
	}
	if err := cl.ProduceSync(context.Background(), old...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, k,
		rawIn{"t", retried}, // Segment's retry, after the upgrade: the same bytes, now a v2 record
		rawIn{"t", identify("b1", "", "b@x.io")},
		rawIn{"t", `{"type":"track","anonymousId":"c1","event":"New","messageId":"m-c1"}`},
	)
	r := startProcessor(t, k, t.TempDir(), "p1", func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	got := settle(t, k, 3, 3*time.Second)
	byEvent := map[string][]schemas.Signal{}
	for _, s := range got {
		byEvent[s.Event] = append(byEvent[s.Event], s)
	}
	if n := len(byEvent["Demo Requested"]); n != 0 {
		t.Errorf("the retry of an event processed before the upgrade was emitted %d times", n)
	}
	if p := byEvent["Pricing"]; len(p) != 1 || p[0].SignalID != idB || versionCount(p[0].Version) != 2 || p[0].Email != "b@x.io" {
		t.Errorf("held page rehydrated as %+v, want id %s version 2 linked", p, idB)
	}
	if len(byEvent["identify"]) != 1 || len(byEvent["New"]) != 1 || len(got) != 3 {
		t.Errorf("signals %+v", got)
	}
	if hits := counterValue(t, r.reg, "signalstage_processor_legacy_id_lookups_total", map[string]string{"result": "hit"}); hits != 1 {
		t.Errorf("legacy id hits = %v, want 1", hits)
	}
}

// testWriter sends log lines to the test's log (seen with -v or on failure).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Logf("%s", p); return len(p), nil }

// The legacy window of a partition: decided once, from whether its state held dedup entries then, kept in the
// state (so the changelog carries it), and closed after one dedup window.
func TestLegacyWindow(t *testing.T) {
	p := &Processor{cfg: Config{DedupWindow: 48 * time.Hour}, log: slog.New(slog.DiscardHandler)}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	open := func(t *testing.T, dir string) *storeState {
		ps, err := openPartStore(dir, "clog/0", nil, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ps.close() })
		return &storeState{partStore: ps}
	}
	commit := func(t *testing.T, s *storeState, ov *overlay, cp int64) {
		ov.close()
		if err := s.applyRecords(ov.mutations(), cp); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("new deployment: never", func(t *testing.T) {
		s := open(t, t.TempDir())
		ov := newOverlay(s.partStore)
		if on, err := p.legacyLookups(0, s, ov, now); on || err != nil {
			t.Fatalf("on %v err %v", on, err)
		}
		commit(t, s, ov, 1)
		again := &storeState{partStore: s.partStore}
		if on, _ := p.legacyLookups(0, again, newOverlay(s.partStore), now); on || !again.legacyKnown {
			t.Fatalf("after restart: on %v known %v", on, again.legacyKnown)
		}
	})
	t.Run("state from before the upgrade: one dedup window", func(t *testing.T) {
		s := open(t, t.TempDir())
		if err := s.applyRecords([]kv{{key: dedupKey("t", "old"), val: dedupEntry{FirstSeenMs: 1, Offset: 1, Version: 1}.encode()}}, 1); err != nil {
			t.Fatal(err)
		}
		ov := newOverlay(s.partStore)
		if on, err := p.legacyLookups(0, s, ov, now); !on || err != nil {
			t.Fatalf("on %v err %v", on, err)
		}
		// The batch aborted: the next one writes the window again, the same.
		ov.close()
		ov = newOverlay(s.partStore)
		if on, _ := p.legacyLookups(0, s, ov, now.Add(time.Hour)); !on || len(ov.mutations()) != 1 {
			t.Fatalf("after an abort: on %v, %d mutations", on, len(ov.mutations()))
		}
		commit(t, s, ov, 2)
		// Another instance (or a restart) reads it back: the window still ends where it was decided.
		again := &storeState{partStore: s.partStore}
		if on, _ := p.legacyLookups(0, again, newOverlay(s.partStore), now.Add(47*time.Hour)); !on {
			t.Fatal("window closed early after a restart")
		}
		if on, _ := p.legacyLookups(0, again, newOverlay(s.partStore), now.Add(48*time.Hour+time.Second)); on {
			t.Fatal("window still open after one dedup window")
		}
	})
}
