package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/signalstage/signalstage/schemas"
)

func testStore(t *testing.T) *partStore {
	t.Helper()
	cache := pebble.NewCache(1 << 20)
	t.Cleanup(cache.Unref)
	s, err := openPartStore(t.TempDir(), "test/0", cache, 1<<20, DefaultVisitorCacheBytes)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	return s
}

// get reads key through a fresh overlay, as the next batch would.
func get(t *testing.T, s *partStore, key []byte) []byte {
	t.Helper()
	v, _ := lookup(t, s, key)
	return v
}

// The visitor cache is a copy of the committed store: every read through an overlay must see what Pebble holds,
// whatever was read, written, rolled back or deleted before.
func TestVisitorCacheFollowsCommittedState(t *testing.T) {
	s := testStore(t)
	ident := identityKey("t", visitor{"anonymous", "a"})
	cnt := counterKey("t", visitor{"anonymous", "a"})
	apply := func(cp int64, kvs ...kv) {
		t.Helper()
		if err := s.applyRecords(kvs, cp); err != nil {
			t.Fatal(err)
		}
	}

	if v := get(t, s, ident); v != nil { // absent, and now cached as absent
		t.Fatalf("fresh store: %q", v)
	}
	apply(1, kv{key: ident, val: []byte("v1")})
	if v := get(t, s, ident); string(v) != "v1" {
		t.Fatalf("after commit: %q, want v1 (a stale 'absent' was served)", v)
	}

	// A batch's own writes are seen by that batch, but never enter the cache: the batch may abort.
	ov := newOverlay(s)
	ov.Set(ident, []byte("uncommitted"))
	if v, _ := ov.Get(ident); string(v) != "uncommitted" {
		t.Fatalf("overlay read its own write as %q", v)
	}
	ov.close() // dropped, as on abort
	if v := get(t, s, ident); string(v) != "v1" {
		t.Fatalf("after an aborted batch: %q, want v1", v)
	}

	apply(2, kv{key: ident, val: []byte("v2")}, kv{key: cnt, val: []byte("c")})
	if v := get(t, s, ident); string(v) != "v2" {
		t.Fatalf("after update: %q", v)
	}
	apply(3, kv{key: ident, del: true})
	if v := get(t, s, ident); v != nil {
		t.Fatalf("after delete: %q", v)
	}
	if v := get(t, s, cnt); string(v) != "c" {
		t.Fatalf("counter: %q", v)
	}
	if s.visitors.hits == 0 {
		t.Fatal("no read was answered by the cache")
	}

	// A wipe (the changelog cannot continue the checkpoint) forgets everything, the cache included.
	if err := s.wipe(); err != nil {
		t.Fatal(err)
	}
	if v := get(t, s, cnt); v != nil {
		t.Fatalf("after wipe: %q", v)
	}

	// Every answer the cache gives equals Pebble's own, over many keys and a budget that forces evictions.
	s.visitors = newVisitorCache(4 << 10)
	var kvs []kv
	for i := range 500 {
		kvs = append(kvs, kv{key: identityKey("t", visitor{"user", fmt.Sprint(i)}), val: []byte(fmt.Sprint("lead", i))})
	}
	apply(4, kvs...)
	for round := range 3 {
		for i := range 600 {
			k := identityKey("t", visitor{"user", fmt.Sprint(i)})
			want, err := s.get(k)
			if err != nil {
				t.Fatal(err)
			}
			if got := get(t, s, k); !bytes.Equal(got, want) {
				t.Fatalf("round %d key %d: cache says %q, Pebble %q", round, i, got, want)
			}
		}
	}
}

// The budget bounds the heap the cache takes, however many visitors pass through it (a Go map that only deletes
// single entries under churn keeps growing its tables: 8 MiB of entries took 57 MiB after 2.5 million inserts).
func TestVisitorCacheMemoryBound(t *testing.T) {
	const budget = 1 << 20
	c := newVisitorCache(budget)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	for i := range 2_000_000 {
		c.put(identityKey("tenant", visitor{"anonymous", fmt.Sprintf("anon-%09d", i)}), []byte("lead@example.com"))
		if i%1000 == 0 { // reads promote from the old generation
			c.get(identityKey("tenant", visitor{"anonymous", fmt.Sprintf("anon-%09d", i/2)}))
		}
	}
	grown := int64(heap()) - int64(before)
	t.Logf("budget %d KiB: %d entries, heap grew %d KiB", budget>>10, len(c.curr)+len(c.prev), grown>>10)
	if grown > 4*budget {
		t.Fatalf("heap grew by %d KiB for a budget of %d KiB", grown>>10, budget>>10)
	}
	runtime.KeepAlive(c)
}

func TestVisitorCacheSkipsPerEventKeys(t *testing.T) {
	for _, k := range [][]byte{dedupKey("t", "abc"), heldKey("t", visitor{"anonymous", "a"}, 1), metaKey, nil} {
		if cacheable(k) {
			t.Errorf("%q is cached: per-event keys would only evict visitors", k)
		}
	}
	for _, k := range [][]byte{identityKey("t", visitor{"user", "u"}), counterKey("t", visitor{"user", "u"}),
		aliasesKey("t", "u"), aliasSentKey("t", "a", "u")} {
		if !cacheable(k) {
			t.Errorf("%q is not cached", k)
		}
	}
	if newVisitorCache(0) != nil || newVisitorCache(-1) != nil {
		t.Error("a budget of 0 or less must disable the cache")
	}
}

// TestDefaultTransactionalID: the default id is stable for one instance (same host, same state dir, however the
// dir is written) and differs between two instances on one host, whose state dirs differ.
func TestDefaultTransactionalID(t *testing.T) {
	t.Chdir(t.TempDir())
	abs, err := filepath.Abs("state-a")
	if err != nil {
		t.Fatal(err)
	}
	a := defaultTransactionalID("p.", "state-a")
	if b := defaultTransactionalID("p.", abs+"/"); b != a {
		t.Errorf("same dir, written two ways: %q and %q", a, b)
	}
	if b := defaultTransactionalID("p.", "state-b"); b == a {
		t.Errorf("two state dirs on one host share the id %q", a)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(a, "p.processor-"+host+"-") {
		t.Errorf("id %q does not start with the prefix, processor and the hostname", a)
	}
	cfg, err := Config{StateDir: "state-a", Topics: schemas.Config{Prefix: "p."}}.withDefaults()
	if err != nil || cfg.TransactionalID != a {
		t.Errorf("withDefaults: id %q (err %v), want %q", cfg.TransactionalID, err, a)
	}
	cfg, _ = Config{StateDir: "state-a", TransactionalID: "mine"}.withDefaults()
	if cfg.TransactionalID != "mine" {
		t.Errorf("an explicit -transactional-id was replaced by %q", cfg.TransactionalID)
	}
}

// TestStateDirInUse: a second processor given a state dir another instance holds refuses to run, with an error
// naming the flag; once the dir is free it is usable again.
func TestStateDirInUse(t *testing.T) {
	dir := t.TempDir()
	held, err := lockStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Config{StateDir: dir, DisableRules: true, Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, ErrStateDirInUse) || !strings.Contains(err.Error(), "-state-dir") {
		t.Fatalf("Run on a held state dir = %v, want ErrStateDirInUse naming -state-dir", err)
	}
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := lockStateDir(dir)
	if err != nil {
		t.Fatalf("state dir not usable once released: %v", err)
	}
	again.Close()
}
