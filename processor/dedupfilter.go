package processor

import (
	"fmt"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
	"github.com/cockroachdb/pebble"
)

// dedupFilter is an in-memory bloom filter over the dedup keys of one partition store, so the dedup lookup of a
// new signal id (almost every event) returns "absent" without seeking Pebble: the memtables have no bloom filter,
// and the seek through them and the levels was a fifth of the processor's CPU (BENCHMARKS.md, "pipeline").
//
// Invariant: once the filter is ready (live != nil), every dedup key present in the store's Pebble is in live. It
// is a superset: a false positive only costs the seek; a false negative would let a duplicate through, an
// exactly-once break. So every write of a dedup key to Pebble goes through write (applyRecords is the only path
// that writes state keys: batches, restores and tests all use it), deletes never remove from the filter, and a
// scan adds what was there before: its filter (next) takes writes from before its iterator is created (write
// holds mu across the commit, the scan across creating the iterator, so a commit is either seen by the iterator
// or added to next).
//
// A scan builds the filter in the background (at open, and again when the keys added pass the capacity it was
// sized for, which also drops expired keys): the store serves lookups from Pebble ("not ready") until the first
// scan finished. It counts the keys first (to size the filter from them, with headroom and a floor), then adds
// them; both passes read keys only.
type dedupFilter struct {
	mu   sync.Mutex
	live *bloom.BloomFilter // nil: not ready
	// liveCap is the number of keys live was sized for; liveN the keys added to it (scanned and written, never
	// decremented), so liveN > liveCap means its false-positive rate is past dedupFilterFPRate.
	liveCap, liveN uint
	next           *bloom.BloomFilter // being built by the running scan, nil when none; writes go to it too
	nextCap, nextN uint
	stop, done     chan struct{} // of the running scan, nil when none
	// lookups since the metrics last took them (takeLookups)
	absent, maybe, notReady int64
}

const (
	// dedupFilterFPRate is the false-positive rate at capacity: 9.6 bits (1.2 bytes) per key of capacity.
	dedupFilterFPRate = 0.01
	// dedupFilterHeadroom: a filter is sized for this many times the keys its scan counted, so a state that stays
	// flat (the sweep expires what the window drops) is scanned again after writing as many keys as it holds.
	dedupFilterHeadroom = 2
	// dedupFilterFloor is the least capacity (77 KiB of bits), so a small or new store is not rebuilt often.
	dedupFilterFloor = 1 << 16
	// dedupFilterChunk keys are added per lock taken by the scan: the batch goroutine waits at most that long.
	dedupFilterChunk = 1024
)

var dedupLower, dedupUpper = []byte{prefixDedup}, []byte{prefixDedup + 1}

func isDedupKey(k []byte) bool { return len(k) > 0 && k[0] == prefixDedup }

func newDedupFilter() *dedupFilter { return &dedupFilter{} }

// mayContain reports whether key may be in the store: false only when the filter is ready and key is not in it.
// A nil filter (disabled) always answers true, uncounted.
func (f *dedupFilter) mayContain(key []byte) bool {
	if f == nil {
		return true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.live == nil:
		f.notReady++
		return true
	case f.live.Test(key):
		f.maybe++
		return true
	}
	f.absent++
	return false
}

// write adds the dedup keys kvs sets to the filter and runs commit, which writes them to db, under the lock, so
// a scan starting meanwhile either sees the commit or gets the keys (see the invariant). It starts a rebuild
// when the keys added passed the capacity.
func (f *dedupFilter) write(db *pebble.DB, kvs []kv, commit func() error) error {
	if f == nil {
		return commit()
	}
	f.mu.Lock()
	for _, r := range kvs {
		if r.del || !isDedupKey(r.key) {
			continue
		}
		if f.live != nil {
			f.live.Add(r.key)
			f.liveN++
		}
		if f.next != nil {
			f.next.Add(r.key)
			f.nextN++
		}
	}
	err := commit()
	full := f.live != nil && f.liveN > f.liveCap
	f.mu.Unlock()
	if full {
		f.scan(db)
	}
	return err
}

// scan starts building the filter from db's dedup keys in the background, unless a scan is running.
func (f *dedupFilter) scan(db *pebble.DB) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done != nil {
		select {
		case <-f.done:
		default:
			return // running
		}
	}
	f.stop, f.done = make(chan struct{}), make(chan struct{})
	go f.build(db, f.stop, f.done)
}

// build is the scan; it gives up when stop closes.
func (f *dedupFilter) build(db *pebble.DB, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	err := f.fill(db, stop)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || f.next == nil {
		// Failed (a Pebble read error, which the batch's own reads report) or stopped: the filter stays as it
		// was: not ready until the store opens again, or the older live one, which the next write past its
		// capacity scans again for.
		f.next, f.nextN = nil, 0
		return
	}
	f.live, f.liveCap, f.liveN = f.next, f.nextCap, f.nextN
	f.next, f.nextN = nil, 0
}

func (f *dedupFilter) fill(db *pebble.DB, stop <-chan struct{}) error {
	n, err := countKeys(db, stop)
	if err != nil || n < 0 {
		return err
	}
	f.mu.Lock()
	f.nextCap = max(dedupFilterFloor, dedupFilterHeadroom*uint(n))
	f.next, f.nextN = bloom.NewWithEstimates(f.nextCap, dedupFilterFPRate), 0
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: dedupLower, UpperBound: dedupUpper})
	f.mu.Unlock()
	if err != nil {
		return fmt.Errorf("scanning dedup keys: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; {
		select {
		case <-stop:
			f.mu.Lock()
			f.next, f.nextN = nil, 0
			f.mu.Unlock()
			return nil
		default:
		}
		f.mu.Lock()
		for i := 0; ok && i < dedupFilterChunk; i++ {
			f.next.Add(it.Key())
			f.nextN++
			ok = it.Next()
		}
		f.mu.Unlock()
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("scanning dedup keys: %w", err)
	}
	return nil
}

// countKeys counts db's dedup keys; -1 when stopped.
func countKeys(db *pebble.DB, stop <-chan struct{}) (int, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: dedupLower, UpperBound: dedupUpper})
	if err != nil {
		return 0, fmt.Errorf("counting dedup keys: %w", err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
		if n%dedupFilterChunk == 0 {
			select {
			case <-stop:
				return -1, nil
			default:
			}
		}
	}
	if err := it.Error(); err != nil {
		return 0, fmt.Errorf("counting dedup keys: %w", err)
	}
	return n, nil
}

// halt stops a running scan and waits for it: before the store's db closes (its iterator must be closed first).
func (f *dedupFilter) halt() {
	if f == nil {
		return
	}
	f.mu.Lock()
	stop, done := f.stop, f.done
	f.stop, f.done = nil, nil
	f.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// reset makes the filter ready and empty, for an empty store (wiped). Call halt first.
func (f *dedupFilter) reset() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.live, f.liveCap, f.liveN = bloom.NewWithEstimates(dedupFilterFloor, dedupFilterFPRate), dedupFilterFloor, 0
	f.next, f.nextN = nil, 0
}

// wait blocks until no scan runs (tests and benchmarks).
func (f *dedupFilter) wait() {
	if f == nil {
		return
	}
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	if done != nil {
		<-done
	}
}

// bytes is the memory of the filter's bits (with a scan's filter being built).
func (f *dedupFilter) bytes() int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := uint(0)
	if f.live != nil {
		n += f.live.Cap()
	}
	if f.next != nil {
		n += f.next.Cap()
	}
	return int(n / 8)
}

// takeLookups returns the lookups counted since the last call and resets them.
func (f *dedupFilter) takeLookups() (absent, maybe, notReady int64) {
	if f == nil {
		return 0, 0, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	absent, maybe, notReady = f.absent, f.maybe, f.notReady
	f.absent, f.maybe, f.notReady = 0, 0, 0
	return absent, maybe, notReady
}
