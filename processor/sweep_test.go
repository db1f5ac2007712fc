package processor

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/signalstage/signalstage/schemas"
)

// batchRig runs the core over a real Pebble store the way the runner does, without Kafka: one overlay per
// batch, each record a unit, the sweep after the records with the runner's budget, the overlay applied as after
// a commit.
type batchRig struct {
	t    testing.TB
	core *Core
	s    *storeState
	em   *recorder
	now  time.Time
	off  int64
	cp   int64
	base int // Config.SweepKeys
	// budget, when set, replaces the runner's sweep budget (benchmarks compare the fixed one it replaced)
	budget func(*overlay) int
	// out, when set, receives the outputs instead of em (benchmarks: em keeps everything)
	out Emitter
}

func newBatchRig(t testing.TB, cfg CoreConfig) *batchRig {
	cache := pebble.NewCache(8 << 20)
	t.Cleanup(func() { cache.Unref() })
	ps, err := openPartStore(t.TempDir(), "test/0", cache, 1<<20, DefaultVisitorCacheBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.close() })
	r := &batchRig{t: t, s: &storeState{partStore: ps}, em: &recorder{}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), base: 500}
	cfg.Now = func() time.Time { return r.now }
	r.core = NewCore(cfg)
	return r
}

// batch processes payloads (tenant t) as one batch at the next offsets and returns the signals it emitted.
func (r *batchRig) batch(payloads ...string) []schemas.Signal {
	r.t.Helper()
	raws := make([]*schemas.RawEvent, len(payloads))
	for i, p := range payloads {
		raws[i] = edgeRaw(r.t, "t", p, r.now)
	}
	return r.raws(raws)
}

func (r *batchRig) raws(raws []*schemas.RawEvent) []schemas.Signal {
	r.t.Helper()
	n := len(r.em.signals)
	ov := newOverlay(r.s.partStore)
	var em Emitter = r.em
	if r.out != nil {
		em = r.out
	}
	for _, raw := range raws {
		r.off++
		ov.begin()
		if err := r.core.ProcessEvent(ov, em, 0, r.off, []byte("k"), raw); err != nil {
			r.t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	budget := sweepBudget(r.base, ov)
	if r.budget != nil {
		budget = r.budget(ov)
	}
	next, err := sweep(r.core, r.s, ov, r.now, budget, time.Minute, log)
	if err != nil {
		r.t.Fatal(err)
	}
	r.s.sweep = next
	ov.close()
	r.cp++
	if err := r.s.applyRecords(ov.mutations(), r.cp); err != nil {
		r.t.Fatal(err)
	}
	return r.em.signals[n:]
}

// keys counts the partition's committed state keys.
func (r *batchRig) keys() int {
	it, err := r.s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{1}})
	if err != nil {
		r.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// The sweep runs in the same batch as writes to the keys it expires and sees the batch's values, not the
// committed ones: a dedup entry the batch re-created after the window stays (a redelivery a second later is a
// duplicate), and a visitor's counter the batch moved (a new held signal) is not reset from its committed value
// (which orphaned the new held record: the identify never rehydrated it).
func TestSweepSeesTheBatch(t *testing.T) {
	r := newBatchRig(t, CoreConfig{DedupWindow: time.Hour, MaxHeldAge: time.Hour})
	old := `{"type":"page","anonymousId":"v","messageId":"m1","properties":{"name":"Old"}}`
	if got := r.batch(old); len(got) != 1 {
		t.Fatalf("first: %d signals", len(got))
	}
	r.now = r.now.Add(2 * time.Hour) // the entry and the held page are past the window and the hold age
	// One batch: the same content again (new after the window: its entry is re-created) and a new page of the
	// same visitor (held: the counter moves).
	if got := r.batch(old, `{"type":"page","anonymousId":"v","messageId":"m2","properties":{"name":"New"}}`); len(got) != 2 {
		t.Fatalf("after the window: %d signals, want 2", len(got))
	}
	if r.core.Stats.HeldExpired != 1 {
		t.Fatalf("held expired = %d, want 1 (the first page)", r.core.Stats.HeldExpired)
	}
	r.now = r.now.Add(time.Second)
	if got := r.batch(old); len(got) != 0 {
		t.Fatalf("a redelivery a second after the entry was re-created was emitted again: %v", events(got))
	}
	got := r.batch(`{"type":"identify","anonymousId":"v","messageId":"i1","traits":{"email":"v@x.io"}}`)
	var rehydrated []string
	for _, s := range got {
		if s.Type == "page" && s.Status == schemas.StatusLinked {
			rehydrated = append(rehydrated, s.Event)
		}
	}
	if len(rehydrated) != 2 {
		t.Fatalf("rehydrated %v, want both pages held after the window (Old again and New)", rehydrated)
	}
}

// Expiry keeps pace with writes: sustained full batches (5000 new events per partition each) with a 1-minute
// window and hold age, 5 s of clock per batch. The state's key count is measured after every batch; once the
// window is full (12 batches), it must stop growing: the largest count in the last third of the run is no more
// than 5 % above the largest in the middle third. (With 500 keys examined per batch it grew by about 9000 keys
// a batch, without end.)
func TestStateStaysFlatUnderFullBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("300 000 events through Pebble")
	}
	r := newBatchRig(t, CoreConfig{DedupWindow: time.Minute, MaxHeldAge: time.Minute})
	const perBatch, batches, visitors = 5000, 60, 20_000
	sizes := make([]int, batches)
	raws := make([]*schemas.RawEvent, perBatch)
	for b := range batches {
		for i := range raws {
			n := b*perBatch + i
			raws[i] = edgeRaw(t, "t", fmt.Sprintf(`{"type":"page","anonymousId":"v%d","messageId":"m%d","properties":{"name":"P"}}`,
				n%visitors, n), r.now)
		}
		r.raws(raws)
		sizes[b] = r.keys()
		r.now = r.now.Add(5 * time.Second)
	}
	peak := func(s []int) int {
		m := 0
		for _, v := range s {
			m = max(m, v)
		}
		return m
	}
	mid, last := peak(sizes[batches/3:2*batches/3]), peak(sizes[2*batches/3:])
	t.Logf("state keys per batch: %v", sizes)
	if float64(last) > 1.05*float64(mid) {
		t.Fatalf("state keeps growing: peak %d keys in the last third of the run, %d in the middle third", last, mid)
	}
	if r.core.Stats.DedupExpired == 0 || r.core.Stats.HeldExpired == 0 {
		t.Fatalf("nothing expired: %+v", r.core.Stats)
	}
}

// While nothing the partition holds can be due, the sweep examines no key: after the first pass (which learns
// the earliest due), batches an hour into a 2 h window and hold age examine nothing, however much they write.
// Once the first entries are due, a pass runs: the held first page expires (its content is new again).
func TestSweepIdleUntilDue(t *testing.T) {
	r := newBatchRig(t, CoreConfig{DedupWindow: 2 * time.Hour, MaxHeldAge: 2 * time.Hour})
	old := `{"type":"page","anonymousId":"v","messageId":"m0","properties":{"name":"Old"}}`
	r.batch(old)
	r.now = r.now.Add(2 * time.Minute)                                         // past the 1-minute pause between passes
	r.batch(`{"type":"track","anonymousId":"w","event":"E","messageId":"m1"}`) // the first full pass
	r.core.Stats = Stats{}
	for i := range 20 {
		r.now = r.now.Add(3 * time.Minute)
		r.batch(fmt.Sprintf(`{"type":"page","anonymousId":"v%d","messageId":"p%d","properties":{"name":"P"}}`, i, i),
			fmt.Sprintf(`{"type":"track","anonymousId":"v%d","event":"E","messageId":"t%d"}`, i, i))
	}
	if n := r.core.Stats.SweepExamined; n != 0 {
		t.Fatalf("the sweep examined %d keys while nothing could be due", n)
	}
	r.now = r.now.Add(time.Hour) // 2 h 2 min after the first page: due
	if got := r.batch(old); len(got) != 1 {
		t.Fatalf("the first page after the window: %d signals, want 1 (its dedup entry expired)", len(got))
	}
	if r.core.Stats.SweepExamined == 0 || r.core.Stats.HeldExpired != 1 {
		t.Fatalf("no pass once due: %+v", r.core.Stats)
	}
}
