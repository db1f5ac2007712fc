package processor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestReplayAfterTheWindowThenLateLink, on the real broker: a cold page view; the dedup window passes (the sweep
// removes its entry); `processor replay` re-reads it (a new signal for the dedup state, so it is held again);
// the replay's entry expires too; then the visitor identifies, which rehydrates both holds. Every emission of the
// page's id carries a higher version than the one before it, in signals.resolved's order, so the sink keeps the
// last (linked) one; before versions were a clock, the replay emitted version 1 again and lost against the stored
// row.
func TestReplayAfterTheWindowThenLateLink(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	mod := func(c *Config) { c.Now, c.DedupWindow, c.SweepInterval = clock, time.Hour, time.Minute }
	dir := t.TempDir()
	page := `{"type":"page","anonymousId":"late","messageId":"m1","properties":{"name":"Pricing"}}`
	tick := func(n string) rawIn {
		return rawIn{"t", `{"type":"track","anonymousId":"other","event":"Tick","messageId":"` + n + `"}`}
	}
	produce(t, k, rawIn{"t", page})
	r := startProcessor(t, k, dir, "p", mod)
	first := readSignals(t, k, 1, 30*time.Second)
	if len(first) != 1 {
		t.Fatalf("got %d signals, want 1", len(first))
	}
	id := first[0].SignalID
	advance(2 * time.Hour)
	produce(t, k, tick("t1")) // a batch after the window: its sweep removes the page's dedup entry
	readSignals(t, k, 2, 30*time.Second)
	waitCounter(t, r, "signalstage_processor_dedup_expired_total", 1)
	r.stop(t)

	replayFromStart(t, k)
	r = startProcessor(t, k, dir, "p", mod)
	readSignals(t, k, 4, 30*time.Second) // the page and the tick again
	advance(2 * time.Hour)
	produce(t, k, tick("t2"))
	readSignals(t, k, 5, 30*time.Second)
	waitCounter(t, r, "signalstage_processor_dedup_expired_total", 2) // the page's and the first tick's entries of the replay
	produce(t, k, rawIn{"t", `{"type":"identify","anonymousId":"late","messageId":"i1","traits":{"email":"late@x.io"}}`})
	got := settle(t, k, 8, 2*time.Second) // + the identify and the page's two holds rehydrated
	r.stop(t)

	var versions []int64
	var last schemas.Signal
	for _, s := range got {
		if s.SignalID != id {
			continue
		}
		versions = append(versions, s.Version)
		if len(versions) > 1 && s.Version <= versions[len(versions)-2] {
			t.Fatalf("versions of the page in emission order %v: not strictly increasing", versions)
		}
		last = s
	}
	if len(versions) != 4 {
		t.Fatalf("%d emissions of the page (%v), want 4: first, replay, two rehydrated holds", len(versions), versions)
	}
	if last.Status != schemas.StatusLinked || last.Email != "late@x.io" {
		t.Fatalf("the highest version is %s %q, want linked late@x.io", last.Status, last.Email)
	}
}

// replayFromStart rewinds the stopped processor's group to offset 0 (retrying while the group still shows the
// stopped member).
func replayFromStart(t *testing.T, k *testenv.Kafka) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 40 {
		if _, err = Replay(ctx, ReplayConfig{Brokers: k.Brokers, Topics: k.Topics, UseOffset: true}); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("replay: %v", err)
}

// waitCounter waits until the processor's counter reaches at least want (metrics count committed batches).
func waitCounter(t *testing.T, r *running, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v := counterValue(t, r.reg, name, nil)
		if v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want at least %v", name, v, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
