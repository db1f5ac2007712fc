package processor

import (
	"sync"
	"testing"
	"time"

	"github.com/signalstage/signalstage/testenv"
)

// TestSweepInTheBatchOfItsWrites, on the real broker: an event's dedup entry expires (1 h window, the test's
// clock); a retry of it arrives after the window, is a new signal again, and its batch's sweep examines the
// committed, expired entry. The sweep must expire from the batch's value (the entry the retry re-created), not the
// committed one: a second retry a second later is a duplicate. (Before, the sweep deleted the re-created entry and
// the second retry was emitted again.)
func TestSweepInTheBatchOfItsWrites(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := startProcessor(t, k, t.TempDir(), "p", func(c *Config) {
		c.Now, c.DedupWindow, c.SweepInterval = clock, time.Hour, time.Minute
	})
	retry := func(sentAt string) rawIn {
		return rawIn{"t", `{"type":"track","anonymousId":"v","event":"E","messageId":"m1","sentAt":"` + sentAt + `"}`}
	}
	produce(t, k, retry("2026-01-01T00:00:00Z"))
	if got := readSignals(t, k, 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("got %d signals, want 1", len(got))
	}
	advance(2 * time.Hour)
	produce(t, k, retry("2026-01-01T00:00:01Z")) // new after the window; its batch sweeps the expired entry
	if got := readSignals(t, k, 2, 30*time.Second); len(got) != 2 {
		t.Fatalf("got %d signals, want 2", len(got))
	}
	advance(time.Second)
	produce(t, k, retry("2026-01-01T00:00:02Z"), rawIn{"t", `{"type":"track","anonymousId":"w","event":"Tick","messageId":"t1"}`})
	got := settle(t, k, 3, 2*time.Second)
	if len(got) != 3 || got[2].Event != "Tick" {
		t.Fatalf("a retry a second after its entry was re-created: %v, want it dropped as a duplicate", events(got))
	}
	r.stop(t)
}
