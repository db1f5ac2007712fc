package processor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
)

// metaKey holds the local bookkeeping of a partition store: which changelog partition it mirrors and the last
// changelog offset applied. It starts with a byte no state key uses and is never written to the changelog.
var metaKey = []byte("\x00meta")

// partStore is the on-disk state of one input partition: a Pebble DB that mirrors one changelog partition up to
// checkpoint. Pebble keeps memory bounded (memtables plus a block cache shared by all partitions); everything
// else is on disk.
type partStore struct {
	db         *pebble.DB
	dir        string
	source     string    // changelog topic/partition this store mirrors
	checkpoint int64     // last changelog offset applied, -1 when none
	savedAt    time.Time // wall time the checkpoint was written (zero when none)
	cache      *pebble.Cache
	memtable   uint64
	visitors   *visitorCache // nil: disabled
	filter     *dedupFilter  // nil: disabled
}

// comparer is Pebble's bytewise order with the whole key as the "prefix", so point lookups (SeekPrefixGE) and
// the bloom filters work on exact keys.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Split = func(k []byte) int { return len(k) }
	c.Name = "signalstage.bytewise.v1"
	return &c
}()

func pebbleOptions(cache *pebble.Cache, memtable uint64) *pebble.Options {
	o := &pebble.Options{
		Comparer:     comparer,
		Cache:        cache,
		MemTableSize: memtable,
		MaxOpenFiles: 256,
		Logger:       quietLogger{},
		// No WAL: the changelog is the durable copy, and the checkpoint lives in the same atomic batches as the
		// data, so a crash loses both together and the next restore reads that part of the changelog again.
		DisableWAL: true,
	}
	// Most dedup and identity lookups miss (new content, unknown visitors): bloom filters answer those without
	// reading data blocks.
	o.Levels = make([]pebble.LevelOptions, 7)
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		o.Levels[i].FilterType = pebble.TableFilter
	}
	// Keys are hashes (signal ids) and visitors, spread over the whole key space: every L0 file overlaps all of the
	// base level, so each L0 compaction rewrites it. Waiting for 8 files instead of 4 halves those rewrites; the
	// extra L0 sublevels cost little on reads, which the bloom filters mostly answer (BENCHMARKS.md: ~+20 % events
	// per CPU-second). Larger memtables measured worse (16 MiB: about -35 %).
	o.L0CompactionThreshold = 8
	return o
}

// openPartStore opens (creating) the store in dir for the changelog partition named source, with a visitor cache
// of visitorCache bytes (0 or less: none). A store that mirrors something else is wiped.
func openPartStore(dir, source string, cache *pebble.Cache, memtable uint64, visitorCache int) (*partStore, error) {
	s := &partStore{dir: dir, source: source, checkpoint: -1, cache: cache, memtable: memtable,
		visitors: newVisitorCache(visitorCache), filter: newDedupFilter()}
	if err := s.open(); err != nil {
		return nil, err
	}
	v, closer, err := s.db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		// No checkpoint: normally an empty store, but scanned anyway (a store without meta is not known empty).
		s.filter.scan(s.db)
		return s, nil
	case err != nil:
		s.db.Close()
		return nil, fmt.Errorf("reading state meta in %s: %w", dir, err)
	}
	src, cp, at, ok := decodeMeta(v)
	closer.Close()
	if !ok || src != source {
		if err := s.wipe(); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.checkpoint, s.savedAt = cp, at
	// In the background: lookups go to Pebble until it is done (see dedupFilter).
	s.filter.scan(s.db)
	return s, nil
}

func (s *partStore) open() error {
	db, err := pebble.Open(s.dir, pebbleOptions(s.cache, s.memtable))
	if err != nil {
		return fmt.Errorf("opening state in %s: %w", s.dir, err)
	}
	s.db = db
	return nil
}

// wipe deletes everything local, so the next restore replays the changelog from its start.
func (s *partStore) wipe() error {
	s.filter.halt()
	if err := s.db.Close(); err != nil && !errors.Is(err, pebble.ErrClosed) {
		return fmt.Errorf("closing state in %s: %w", s.dir, err)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("wiping state in %s: %w", s.dir, err)
	}
	s.checkpoint, s.savedAt = -1, time.Time{}
	if s.visitors != nil {
		s.visitors.reset()
	}
	s.filter.reset() // the store is empty: every key it will hold goes through applyRecords
	return s.open()
}

// close flushes the memtables (without a WAL they would be lost, costing a longer catch-up next time) and closes.
func (s *partStore) close() error {
	s.filter.halt()
	if err := s.db.Flush(); err != nil {
		s.db.Close()
		return fmt.Errorf("flushing state in %s: %w", s.dir, err)
	}
	return s.db.Close()
}

func encodeMeta(source string, checkpoint int64, at time.Time) []byte {
	b := appendBytes([]byte{valueFormat}, []byte(source))
	b = binary.AppendVarint(b, checkpoint)
	return binary.AppendVarint(b, at.UnixMilli())
}

func decodeMeta(b []byte) (string, int64, time.Time, bool) {
	r := newValueReader(b)
	src := string(r.bytes())
	cp := r.varint()
	at := r.varint()
	return src, cp, time.UnixMilli(at), r.err == nil
}

// lockStateDir makes dir this instance's until the returned closer is closed: a second instance (process or
// Processor) given the same -state-dir fails at start, instead of two instances sharing partition stores and the
// transactional id derived from the dir.
func lockStateDir(dir string) (io.Closer, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	l, err := vfs.Default.Lock(filepath.Join(abs, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("%w: -state-dir %s is in use by another processor instance (each needs its own): %w",
			ErrStateDirInUse, abs, err)
	}
	return l, nil
}

// ErrStateDirInUse: another instance holds the state dir.
var ErrStateDirInUse = errors.New("state dir in use")

// get reads committed state.
func (s *partStore) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading state: %w", ErrStateIO, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// applyRecords writes changelog records (nil value = delete) and the new checkpoint atomically.
func (s *partStore) applyRecords(kvs []kv, checkpoint int64) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, r := range kvs {
		var err error
		if r.del {
			err = b.Delete(r.key, nil)
		} else {
			err = b.Set(r.key, r.val, nil)
		}
		if err != nil {
			return fmt.Errorf("batching state: %w", err)
		}
	}
	now := time.Now()
	if err := b.Set(metaKey, encodeMeta(s.source, checkpoint, now), nil); err != nil {
		return fmt.Errorf("batching state meta: %w", err)
	}
	// NoSync (and no WAL, see pebbleOptions): the changelog is the durable copy. Through the filter, which takes
	// the dedup keys first.
	if err := s.filter.write(s.db, kvs, func() error { return b.Commit(pebble.NoSync) }); err != nil {
		return fmt.Errorf("committing state: %w", err)
	}
	s.checkpoint, s.savedAt = checkpoint, now
	if s.visitors != nil {
		for _, r := range kvs {
			if !cacheable(r.key) {
				continue
			}
			if r.del {
				s.visitors.put(r.key, nil)
			} else {
				// a copy: a restored value may share a whole fetch buffer
				s.visitors.put(r.key, append([]byte(nil), r.val...))
			}
		}
	}
	return nil
}

// ErrStateIO wraps failures of the state store itself (Pebble): they stop the processor, unlike failures to
// process one record, which dead-letter that record.
var ErrStateIO = errors.New("state store failure")

type kv struct {
	key, val []byte
	del      bool
}

// overlay is a State for one batch: writes are buffered in memory, reads see them first and fall back to the
// committed store. The buffer is bounded by the batch (one poll), not by the state. Call close when done.
type overlay struct {
	store *partStore
	muts  map[string]kv
	// iter reads the committed store for the whole batch. The store does not change during a batch (it is
	// written only after the commit), so one iterator serves every lookup, and unlike DB.Get it can use the
	// bloom filters of the last level, where most keys live and most lookups (new signal ids) miss.
	iter *pebble.Iterator
	// undo holds, for keys written since begin, their mutation before (present false: none), so one record's
	// writes can be rolled back when processing it fails half-way.
	undo map[string]undoEntry
}

type undoEntry struct {
	prev    kv
	present bool
}

// begin starts the writes of one record.
func (o *overlay) begin() { clear(o.undo) }

// rollback undoes the writes since begin.
func (o *overlay) rollback() {
	for k, u := range o.undo {
		if u.present {
			o.muts[k] = u.prev
		} else {
			delete(o.muts, k)
		}
	}
	clear(o.undo)
}

func (o *overlay) remember(k string) {
	if _, ok := o.undo[k]; ok {
		return
	}
	prev, present := o.muts[k]
	o.undo[k] = undoEntry{prev, present}
}

func newOverlay(s *partStore) *overlay {
	return &overlay{store: s, muts: make(map[string]kv), undo: make(map[string]undoEntry)}
}

func (o *overlay) Get(key []byte) ([]byte, error) {
	if m, ok := o.muts[string(key)]; ok {
		if m.del {
			return nil, nil
		}
		return m.val, nil
	}
	if isDedupKey(key) && !o.store.filter.mayContain(key) {
		return nil, nil // not committed (the filter holds every committed dedup key), not written by the batch
	}
	vc := o.store.visitors
	if vc != nil && cacheable(key) {
		if v, ok := vc.get(key); ok {
			return v, nil
		}
		v, err := o.getCommitted(key)
		if err == nil {
			vc.put(key, v)
		}
		return v, err
	}
	return o.getCommitted(key)
}

// getCommitted reads key from Pebble, through the batch's iterator.
func (o *overlay) getCommitted(key []byte) ([]byte, error) {
	if o.iter == nil {
		it, err := o.store.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
		if err != nil {
			return nil, fmt.Errorf("%w: reading state: %w", ErrStateIO, err)
		}
		o.iter = it
	}
	if !o.iter.SeekPrefixGE(key) || !bytes.Equal(o.iter.Key(), key) {
		if err := o.iter.Error(); err != nil {
			return nil, fmt.Errorf("%w: reading state: %w", ErrStateIO, err)
		}
		return nil, nil
	}
	v, err := o.iter.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("%w: reading state: %w", ErrStateIO, err)
	}
	return append([]byte(nil), v...), nil
}

// close releases the batch's view of the store.
func (o *overlay) close() {
	if o.iter != nil {
		_ = o.iter.Close()
		o.iter = nil
	}
}

func (o *overlay) Set(key, value []byte) {
	k := string(key)
	o.remember(k)
	o.muts[k] = kv{key: stringBytes(k), val: value}
}

func (o *overlay) Delete(key []byte) {
	k := string(key)
	o.remember(k)
	o.muts[k] = kv{key: stringBytes(k), del: true}
}

// mutations returns the buffered writes, one per key (the last one wins, as compaction would keep).
func (o *overlay) mutations() []kv {
	out := make([]kv, 0, len(o.muts))
	for _, m := range o.muts {
		out = append(out, m)
	}
	return out
}

// quietLogger drops Pebble's informational logs; errors surface as returned errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// stringBytes returns the bytes of the map key k without a copy: kv.key is only ever read (Pebble's batch copies
// it, kgo only hashes and writes it), so it can share k's immutable memory.
func stringBytes(k string) []byte { return unsafe.Slice(unsafe.StringData(k), len(k)) }

// Scan calls fn for every key under prefix as the batch sees it: the committed keys the batch did not change,
// then the batch's own (deletes left out). Not in key order across the two. For rare walks (an erasure looking
// for the ids linked to an email), not the hot path.
func (o *overlay) Scan(prefix []byte, fn func(key, value []byte) error) error {
	upper := append([]byte(nil), prefix...)
	upper[len(upper)-1]++ // prefixes end with the tenant's 0 separator, never 0xff
	it, err := o.store.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("%w: scanning state: %w", ErrStateIO, err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if _, changed := o.muts[string(it.Key())]; changed {
			continue
		}
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("%w: scanning state: %w", ErrStateIO, err)
	}
	for _, m := range o.muts {
		if !m.del && bytes.HasPrefix(m.key, prefix) {
			if err := fn(m.key, m.val); err != nil {
				return err
			}
		}
	}
	return nil
}
