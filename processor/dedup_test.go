package processor

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestFiveDeliveriesOneSignal: the same event delivered 5 times, in different batches (before the processor
// starts, while it runs, after a restart), key orders and sentAt values, yields one signal.
func TestFiveDeliveriesOneSignal(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	deliveries := []string{
		`{"type":"track","anonymousId":"v1","event":"Demo","messageId":"m1","properties":{"a":1,"b":[1,2]},"sentAt":"2026-01-01T00:00:00Z"}`,
		`{"sentAt":"2026-01-01T00:00:09Z","messageId":"m1","properties":{"b":[1,2],"a":1},"event":"Demo","anonymousId":"v1","type":"track"}`,
		`{ "type" : "track", "anonymousId":"v1", "event":"Demo", "messageId":"m1", "properties":{"a":1,"b":[1, 2]}, "sentAt":"2026-01-02T00:00:00Z", "receivedAt":"x"}`,
		`{"type":"track","anonymousId":"v1","event":"Demo","messageId":"m1","properties":{"b":[1,2],"a":1}}`,
		`{"messageId":"m1","type":"track","event":"Demo","anonymousId":"v1","properties":{"a":1,"b":[1,2]},"sentAt":"2030-01-01T00:00:00Z"}`,
	}
	other := `{"type":"track","anonymousId":"v1","event":"Other","messageId":"m2"}`
	produce(t, k, rawIn{"t", deliveries[0]}, rawIn{"t", other}, rawIn{"t", deliveries[1]})
	dir := t.TempDir()
	r := startProcessor(t, k, dir, "p1", nil)
	if got := readSignals(t, k, 2, 30*time.Second); len(got) != 2 {
		t.Fatalf("got %d signals, want 2", len(got))
	}
	produce(t, k, rawIn{"t", deliveries[2]})
	produce(t, k, rawIn{"t", deliveries[3]})
	time.Sleep(time.Second)
	r.stop(t)
	// A restart on an empty disk restores the dedup state from the changelog.
	r = startProcessor(t, k, t.TempDir(), "p1", nil)
	produce(t, k, rawIn{"t", deliveries[4]}, rawIn{"t", `{"type":"track","anonymousId":"v1","event":"Last","messageId":"m3"}`})
	got := settle(t, k, 3, 3*time.Second)
	if len(got) != 3 {
		t.Fatalf("got %d signals, want 3 (Demo once, Other, Last): %v", len(got), events(got))
	}
	if v := counterValue(t, r.reg, "signalstage_processor_duplicates_total", nil); v != 1 {
		t.Errorf("duplicates after restart = %v, want 1", v)
	}
	r.stop(t)
}

func events(ss []schemas.Signal) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%s/v%d/%s", s.Event, s.Version, s.SignalID[:8])
	}
	return out
}

// TestTenThousandDistinct: 10,000 distinct events yield 10,000 distinct signals, none dropped as duplicates.
func TestTenThousandDistinct(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	ins := make([]rawIn, 10_000)
	for i := range ins {
		// Same visitor, name and properties for many: only the messageId and timestamp differ.
		ins[i] = rawIn{"t", fmt.Sprintf(`{"type":"track","anonymousId":"v%d","event":"Viewed","messageId":"m%d","properties":{"n":1}}`, i%97, i)}
	}
	produce(t, k, ins...)
	r := startProcessor(t, k, t.TempDir(), "p1", nil)
	got := settle(t, k, 10_000, 3*time.Second)
	ids := map[string]bool{}
	for _, s := range got {
		ids[s.SignalID] = true
	}
	if len(got) != 10_000 || len(ids) != 10_000 {
		t.Fatalf("got %d signals with %d distinct ids, want 10000", len(got), len(ids))
	}
	if v := counterValue(t, r.reg, "signalstage_processor_duplicates_total", nil); v != 0 {
		t.Errorf("duplicates = %v", v)
	}
	r.stop(t)
}

// TestSweepExpiresState: the runner's sweep walks the Pebble state and removes dedup entries past the window and
// held signals past their age, through the changelog; content seen again after the window is a new signal.
func TestSweepExpiresState(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := startProcessor(t, k, t.TempDir(), "p", func(c *Config) {
		c.Now, c.DedupWindow, c.MaxHeldAge, c.SweepInterval = clock, time.Hour, 2*time.Hour, time.Minute
	})
	ev := `{"type":"page","anonymousId":"v","messageId":"m1","properties":{"name":"P"}}`
	produce(t, k, rawIn{"t", ev})
	if got := readSignals(t, k, 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("got %d signals", len(got))
	}
	advance(3 * time.Hour)
	produce(t, k, rawIn{"t", `{"type":"track","anonymousId":"w","event":"Tick","messageId":"m2"}`})
	if got := readSignals(t, k, 2, 30*time.Second); len(got) != 2 {
		t.Fatalf("got %d signals", len(got))
	}
	produce(t, k, rawIn{"t", ev})
	got := settle(t, k, 3, 2*time.Second)
	if len(got) != 3 || got[2].SignalID != got[0].SignalID || versionCount(got[2].Version) != 1 || got[2].Version <= got[0].Version {
		t.Fatalf("after the window: %v", events(got))
	}
	if v := counterValue(t, r.reg, "signalstage_processor_dedup_expired_total", nil); v < 1 {
		t.Errorf("dedup_expired_total = %v", v)
	}
	if v := counterValue(t, r.reg, "signalstage_processor_held_dropped_total", map[string]string{"reason": "expired"}); v != 1 {
		t.Errorf("held expired = %v, want 1", v)
	}
	r.stop(t)
}
