package sink

import (
	"testing"
	"time"
)

// TestRecycleRows: a batch acknowledged and recycled gives its row slice, emptied, to the next take of its
// table, so a steady stream of flushes allocates no new batch; the rows of the batch it held are cleared (no
// string of theirs stays reachable) and the new batch starts empty.
func TestRecycleRows(t *testing.T) {
	tb := newSignalsTable("db")
	p := tp{"signals.resolved", 0}
	for i := range 3 {
		tb.add(signalRow{Tenant: "t", SignalID: "s" + string(rune('a'+i))}, p, int64(i), 100, time.Now())
	}
	first := tb.take().(*table[signalRow])
	backing := &first.rows[:1][0]
	if tb.len() != 0 || first.len() != 3 {
		t.Fatalf("after take: table %d rows, batch %d; want 0 and 3", tb.len(), first.len())
	}
	first.recycle()
	if backing.Tenant != "" || backing.SignalID != "" {
		t.Fatalf("a recycled batch keeps its rows: %+v", *backing)
	}
	if first.rows != nil {
		t.Fatal("a recycled batch still refers to its rows")
	}
	tb.add(signalRow{Tenant: "t", SignalID: "next"}, p, 3, 100, time.Now())
	second := tb.take().(*table[signalRow])
	tb.add(signalRow{Tenant: "t", SignalID: "third"}, p, 4, 100, time.Now())
	if &tb.rows[0] != backing {
		t.Fatal("the next take did not reuse the recycled slice")
	}
	if tb.len() != 1 || tb.rows[0].SignalID != "third" {
		t.Fatalf("the reused batch holds %+v, want just the new row", tb.rows)
	}
	if second.len() != 1 || second.rows[0].SignalID != "next" {
		t.Fatalf("the batch in flight changed: %+v", second.rows)
	}
	// Bounded: more recycled slices than maxSpare are dropped, not kept.
	for range maxSpare + 2 {
		tb.add(signalRow{Tenant: "t", SignalID: "x"}, p, 5, 100, time.Now())
		tb.take().recycle()
	}
	if len(tb.spare) > maxSpare {
		t.Fatalf("%d spare slices kept, want at most %d", len(tb.spare), maxSpare)
	}
}
