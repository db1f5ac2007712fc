package processor

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalstage/signalstage/testenv"
)

// lookup reads key through a fresh overlay, as the next batch would, and reports whether the read reached Pebble
// (the overlay opens its iterator on the first committed read).
func lookup(t *testing.T, s *partStore, key []byte) (val []byte, pebbleRead bool) {
	t.Helper()
	ov := newOverlay(s)
	defer ov.close()
	v, err := ov.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return v, ov.iter != nil
}

func testDedupValue(i int) []byte {
	return dedupEntry{FirstSeenMs: 1, Offset: int64(i), Version: 1}.encode()
}

// The filter answers a new signal id "absent" without reading Pebble, and never hides one that is there: in the
// process, after the store is closed and opened again (the filter is built again by a scan), and after a wipe
// and a restore (which writes through applyRecords).
func TestDedupFilterAbsentWithoutPebbleAndDuplicatesFound(t *testing.T) {
	cache := pebble.NewCache(1 << 20)
	t.Cleanup(cache.Unref)
	dir := filepath.Join(t.TempDir(), "0")
	open := func() *partStore {
		t.Helper()
		s, err := openPartStore(dir, "test/0", cache, 1<<20, DefaultVisitorCacheBytes)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	seen, fresh := dedupKey("t", "seen"), dedupKey("t", "new")
	check := func(s *partStore, when string) {
		t.Helper()
		s.filter.wait()
		_, _, _ = s.filter.takeLookups()
		if v, read := lookup(t, s, fresh); v != nil || read {
			t.Fatalf("%s: new id: value %q, Pebble read %v; want absent without reading Pebble", when, v, read)
		}
		if v, _ := lookup(t, s, seen); string(v) != string(testDedupValue(7)) {
			t.Fatalf("%s: duplicate not found: %q", when, v)
		}
		if a, m, nr := s.filter.takeLookups(); a != 1 || m != 1 || nr != 0 {
			t.Fatalf("%s: lookups absent %d maybe %d not_ready %d; want 1, 1, 0", when, a, m, nr)
		}
	}

	s := open()
	if err := s.applyRecords([]kv{{key: seen, val: testDedupValue(7)}}, 1); err != nil {
		t.Fatal(err)
	}
	check(s, "in the process")

	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if s.checkpoint != 1 {
		t.Fatalf("checkpoint %d after reopen", s.checkpoint)
	}
	check(s, "after reopen")

	// A wipe empties the store and the filter; a restore writes the changelog back through applyRecords.
	if err := s.wipe(); err != nil {
		t.Fatal(err)
	}
	if v, read := lookup(t, s, seen); v != nil || read {
		t.Fatalf("after wipe: value %q, Pebble read %v; want absent from the filter", v, read)
	}
	if err := s.applyRecords([]kv{{key: seen, val: testDedupValue(7)}}, 1); err != nil {
		t.Fatal(err)
	}
	check(s, "after wipe and restore")
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}

// Every dedup key any applyRecords wrote is found while the filter passes its capacity and is built again in the
// background (writes going on during the scan), whatever else the batches carry: a write path that skipped the
// filter, or a rebuild that lost the writes made during its scan, fails here. Run it with -race.
func TestDedupFilterNeverHidesWrittenKeys(t *testing.T) {
	s := testStore(t)
	s.filter.wait()
	const batches, perBatch = 40, 5000 // 200 000 keys: three times the floor capacity, so it is rebuilt
	var wg sync.WaitGroup
	for b := range batches {
		kvs := make([]kv, 0, perBatch+2)
		for i := range perBatch {
			n := b*perBatch + i
			kvs = append(kvs, kv{key: dedupKey(fmt.Sprint("t", n%7), fmt.Sprintf("id-%08d", n)), val: testDedupValue(n)})
		}
		// other kinds of keys and deletes in the same batch
		kvs = append(kvs, kv{key: identityKey("t", visitor{"user", fmt.Sprint(b)}), val: []byte("x")},
			kv{key: dedupKey("t0", fmt.Sprintf("gone-%d", b)), del: true})
		if err := s.applyRecords(kvs, int64(b+1)); err != nil {
			t.Fatal(err)
		}
		// Look up while a scan may run (the batch goroutine and the scan share the filter).
		for i := 0; i < (b+1)*perBatch; i += 97 {
			k := dedupKey(fmt.Sprint("t", i%7), fmt.Sprintf("id-%08d", i))
			if !s.filter.mayContain(k) {
				t.Fatalf("batch %d: written key %q hidden by the filter", b, k)
			}
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.filter.bytes() }() // the metrics read it from elsewhere
	}
	wg.Wait()
	s.filter.wait()
	for i := range batches * perBatch {
		k := dedupKey(fmt.Sprint("t", i%7), fmt.Sprintf("id-%08d", i))
		if v, _ := lookup(t, s, k); v == nil {
			t.Fatalf("written key %q not found after the rebuild", k)
		}
	}
	if c := filterCap(s.filter); c <= dedupFilterFloor {
		t.Fatalf("filter capacity %d: never rebuilt past its floor", c)
	}
	// New ids are still answered by the filter after the rebuild (at most a few false positives).
	_, _, _ = s.filter.takeLookups()
	for i := range 1000 {
		lookup(t, s, dedupKey("t1", fmt.Sprintf("never-%d", i)))
	}
	if a, m, nr := s.filter.takeLookups(); a < 950 || nr != 0 {
		t.Fatalf("after rebuild: absent %d maybe %d not_ready %d of 1000 new ids", a, m, nr)
	}
}

// A store opened on an existing state serves lookups from Pebble while its filter is built, and finds every key.
func TestDedupFilterNotReadyReadsPebble(t *testing.T) {
	cache := pebble.NewCache(1 << 20)
	t.Cleanup(cache.Unref)
	dir := filepath.Join(t.TempDir(), "0")
	s, err := openPartStore(dir, "test/0", cache, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kvs []kv
	for i := range 100_000 {
		kvs = append(kvs, kv{key: dedupKey("t", fmt.Sprint(i)), val: testDedupValue(i)})
	}
	if err := s.applyRecords(kvs, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	s, err = openPartStore(dir, "test/0", cache, 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for i := 0; i < 100_000; i += 10 { // some of them while the scan runs
		if v, _ := lookup(t, s, dedupKey("t", fmt.Sprint(i))); v == nil {
			t.Fatalf("key %d not found", i)
		}
	}
	s.filter.wait()
	if c := filterCap(s.filter); c < 100_000*dedupFilterHeadroom { // sized from the keys found, with headroom
		t.Fatalf("filter capacity %d for 100 000 keys", c)
	}
}

func filterCap(f *dedupFilter) uint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.liveCap
}

// Through the processor: new ids are answered by the filter, and a duplicate is dropped after a restart on the
// same disk (the filter built again by a scan) and on an empty one (the state restored from the changelog).
func TestDedupFilterProcessorRestarts(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	dup := `{"type":"track","anonymousId":"v1","event":"Demo","messageId":"m1"}`
	produce(t, k, rawIn{"t", dup})
	dir := t.TempDir()
	r := startProcessor(t, k, dir, "p1", nil)
	if got := readSignals(t, k, 1, 30*time.Second); len(got) != 1 {
		t.Fatalf("got %d signals, want 1", len(got))
	}
	ins := make([]rawIn, 50)
	for i := range ins {
		ins[i] = rawIn{"t", fmt.Sprintf(`{"type":"track","anonymousId":"v1","event":"New","messageId":"n%d"}`, i)}
	}
	produce(t, k, ins...)
	if got := readSignals(t, k, 51, 30*time.Second); len(got) != 51 {
		t.Fatalf("got %d signals, want 51", len(got))
	}
	if v := counterValue(t, r.reg, "signalstage_processor_dedup_filter_total", map[string]string{"result": "absent"}); v < 1 {
		t.Errorf("no lookup answered absent by the filter (%v)", v)
	}
	if v := gaugeValue(t, r.reg, "signalstage_processor_dedup_filter_bytes"); v <= 0 {
		t.Errorf("dedup_filter_bytes = %v", v)
	}
	r.stop(t)

	for i, d := range []string{dir, t.TempDir()} { // the same disk, then an empty one
		r = startProcessor(t, k, d, "p1", nil)
		produce(t, k, rawIn{"t", dup}, rawIn{"t", fmt.Sprintf(`{"type":"track","anonymousId":"v1","event":"Last","messageId":"l%d"}`, i)})
		if got := settle(t, k, 52+i, 3*time.Second); len(got) != 52+i {
			t.Fatalf("restart %d: got %d signals, want %d: the duplicate went through", i, len(got), 52+i)
		}
		if v := counterValue(t, r.reg, "signalstage_processor_duplicates_total", nil); v != 1 {
			t.Errorf("restart %d: duplicates = %v, want 1", i, v)
		}
		r.stop(t)
	}
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 && mf.GetMetric()[0].Gauge != nil {
			return mf.GetMetric()[0].Gauge.GetValue()
		}
	}
	return 0
}
