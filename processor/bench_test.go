package processor

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/signalstage/signalstage/schemas"
)

// encodingEmitter takes what the Kafka emitter takes (signals come encoded by the core) and drops it.
type encodingEmitter struct{ n int }

func (e *encodingEmitter) Signal(_ []byte, _ *schemas.Signal, enc []byte) { e.n += len(enc) }

func (e *encodingEmitter) Link(l *schemas.IdentityLink) {
	b, err := schemas.IdentityLinks.Encode(l)
	if err != nil {
		panic(err)
	}
	e.n += len(b)
}

// benchEvent is a Segment track of about 420 bytes; every 10th event of a visitor is an identify with email. It
// is the record the edge writes (raw_event.v2: the contract's fields derived there), as the processor reads it.
func benchEvent(b testing.TB, i, visitors int) *schemas.RawEvent {
	return segmentEvent(b, i, visitors, i%10 == 9)
}

// segmentEvent is event i of visitor i%visitors as the edge writes it: an identify with email, or a track.
func segmentEvent(b testing.TB, i, visitors int, identify bool) *schemas.RawEvent {
	v := i % visitors
	var p string
	if identify {
		p = fmt.Sprintf(`{"type":"identify","anonymousId":"anon-%08d","userId":"user-%08d","messageId":"msg-%010d","timestamp":"2026-01-01T00:00:00.000Z","sentAt":"2026-01-01T00:00:01.000Z","traits":{"email":"lead%d@example.com","name":"Lead %d","company":"Example Inc","title":"CTO"},"context":{"library":{"name":"analytics.js","version":"4.1.0"},"ip":"203.0.113.7"}}`, v, v, i, v, v)
	} else {
		p = fmt.Sprintf(`{"type":"track","event":"Viewed Pricing","anonymousId":"anon-%08d","messageId":"msg-%010d","timestamp":"2026-01-01T00:00:00.000Z","sentAt":"2026-01-01T00:00:01.000Z","properties":{"plan":"pro","price":49.00,"currency":"USD","path":"/pricing"},"context":{"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing","referrer":"https://google.com/"},"userAgent":"Mozilla/5.0","ip":"203.0.113.7"}}`, v, i)
	}
	return edgeRaw(b, "bench", p, time.Now())
}

// roundEvent returns event i of the cycling set under a tenant per round, so every event is new content (no
// duplicates) and the state keeps growing as in a real stream.
func roundEvent(events []*schemas.RawEvent, i int) schemas.RawEvent {
	ev := *events[i%len(events)]
	ev.Tenant = tenants[(i/len(events))%len(tenants)]
	return ev
}

var tenants = func() []string {
	t := make([]string, 1000)
	for i := range t {
		t[i] = fmt.Sprint("bench", i)
	}
	return t
}()

// BenchmarkCoreMemory: the processing path (dedup, identity, cold storage, Avro encoding of the outputs; the
// event's fields come derived from the edge, so nothing is parsed) over an in-memory state: the CPU cost of the
// logic alone.
func BenchmarkCoreMemory(b *testing.B) {
	events := make([]*schemas.RawEvent, 100_000)
	for i := range events {
		events[i] = benchEvent(b, i, 20_000)
	}
	c := NewCore(CoreConfig{})
	st := memState{}
	em := &encodingEmitter{}
	b.ResetTimer()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		ev := roundEvent(events, i)
		if err := c.ProcessEvent(st, em, 0, int64(i), []byte("k"), &ev); err != nil {
			b.Fatal(err)
		}
		if i%len(events) == len(events)-1 {
			st = memState{} // bound the map; the next round is new content anyway (another tenant)
		}
	}
	reportRates(b, cpu0)
}

// BenchmarkCorePebble: the same path over the real state: a Pebble store with one overlay per 5000-event batch,
// applied at the end of each batch as after a commit (no Kafka I/O), for two workloads:
//   - anonymous: benchEvent's mix; most events come from visitors not linked yet, so they are held cold (a held
//     record and the visitor's counter per event, besides the dedup entry);
//   - identified: the same track events, from visitors linked before the run (as in a product whose users log
//     in), so nothing is held: the dedup entry is the only write per event.
func BenchmarkCorePebble(b *testing.B) {
	events := make([]*schemas.RawEvent, 100_000)
	for i := range events {
		events[i] = benchEvent(b, i, 20_000)
	}
	b.Run("anonymous", func(b *testing.B) { corePebble(b, events, nil) })
	tracks := make([]*schemas.RawEvent, 100_000)
	for i := range tracks {
		tracks[i] = segmentEvent(b, i, 20_000, false)
	}
	b.Run("identified", func(b *testing.B) {
		corePebble(b, tracks, func(s *partStore, rounds int) {
			// Link every visitor of every tenant the run will use, as committed state (as a restore writes it).
			var kvs []kv
			for r := range rounds {
				for v := range 20_000 {
					id := identity{LinkedAtMs: 1, Email: fmt.Sprintf("lead%d@example.com", v), Traits: "{}"}
					kvs = append(kvs, kv{key: identityKey(tenants[r%len(tenants)], visitor{schemas.IDKindAnonymous,
						fmt.Sprintf("anon-%08d", v)}), val: id.encode()})
				}
			}
			if err := s.applyRecords(kvs, 0); err != nil {
				b.Fatal(err)
			}
			if err := s.db.Flush(); err != nil {
				b.Fatal(err)
			}
			s.visitors.reset() // the run reads them from Pebble first, as after a restart
		})
	})
}

// corePebble runs the events (cycling, one tenant per round) through the core over a fresh Pebble store;
// prepare, when not nil, writes committed state first for the given number of rounds.
func corePebble(b *testing.B, events []*schemas.RawEvent, prepare func(s *partStore, rounds int)) {
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	s, err := openPartStore(b.TempDir(), "bench/0", cache, benchMemtable(), DefaultVisitorCacheBytes)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	if os.Getenv("PROCESSOR_BENCH_DEDUP_FILTER") == "off" { // the comparison without it
		s.filter.halt()
		s.filter = nil
	}
	if prepare != nil {
		prepare(s, b.N/len(events)+1)
	}
	s.filter.wait()
	c := NewCore(CoreConfig{})
	em := &encodingEmitter{}
	ov := newOverlay(s)
	cp := int64(0)
	b.ResetTimer()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		ev := roundEvent(events, i)
		ov.begin() // as the runner does per record
		if err := c.ProcessEvent(ov, em, 0, int64(i), []byte("k"), &ev); err != nil {
			b.Fatal(err)
		}
		if i%5000 == 4999 || i == b.N-1 {
			cp++
			ov.close()
			if err := s.applyRecords(ov.mutations(), cp); err != nil {
				b.Fatal(err)
			}
			ov = newOverlay(s)
		}
	}
	reportRates(b, cpu0)
	if vc := s.visitors; vc != nil && vc.hits+vc.misses > 0 {
		b.ReportMetric(100*float64(vc.hits)/float64(vc.hits+vc.misses), "%visitor-hits")
	}
	st := c.Stats
	b.ReportMetric(100*float64(st.Cold)/float64(st.Events), "%cold")
}

// BenchmarkDedupFilterScan is the scan that builds a store's dedup filter at open (both passes: count, then
// add), per million dedup keys of 70 bytes in the shape the core writes, on flushed state.
func BenchmarkDedupFilterScan(b *testing.B) {
	cache := pebble.NewCache(32 << 20)
	defer cache.Unref()
	s, err := openPartStore(b.TempDir(), "bench/0", cache, benchMemtable(), 0)
	if err != nil {
		b.Fatal(err)
	}
	defer s.close()
	const keys = 1_000_000
	for c := range keys / 10_000 {
		kvs := make([]kv, 0, 10_000)
		for i := range 10_000 {
			n := c*10_000 + i
			kvs = append(kvs, kv{key: dedupKey(tenants[n%len(tenants)], fmt.Sprintf("%064x", n*2654435761)),
				val: dedupEntry{FirstSeenMs: int64(n), Offset: int64(n), Version: 1 << 16}.encode()})
		}
		if err := s.applyRecords(kvs, int64(c)); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	s.filter.wait()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.filter.reset()
		s.filter.liveN = s.filter.liveCap + 1 // past capacity: the next write scans again
		if err := s.applyRecords(nil, int64(i)); err != nil {
			b.Fatal(err)
		}
		s.filter.wait()
	}
	b.ReportMetric(float64(s.filter.bytes())/keys, "filter-bytes/key")
}

// BenchmarkReadV1 is the cost of a raw_event.v1 record (written before the event contract): the processor derives
// its fields with the contract, leniently, and computes its legacy signal id. Only records from before the upgrade
// pay it.
func BenchmarkReadV1(b *testing.B) {
	raw := v1Raw(benchEvent(b, 1, 10))
	var r eventReader
	b.ReportAllocs()
	b.SetBytes(int64(len(raw.Payload)))
	for i := 0; i < b.N; i++ {
		ev, err := r.read(raw)
		if err != nil {
			b.Fatal(err)
		}
		if ev.legacyID() == "" {
			b.Fatal("no legacy id")
		}
	}
}

// cpuTime is the CPU time (user + system) this process used so far: on a shared machine, events per CPU second
// is the per-core rate, where events per wall second depends on what else runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportRates(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	}
}

func benchMemtable() uint64 {
	if v, err := strconv.Atoi(os.Getenv("PROCESSOR_BENCH_MEMTABLE_MB")); err == nil && v > 0 {
		return uint64(v) << 20
	}
	return 4 << 20
}
