package processor

import (
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// BenchmarkCorePebbleSweep: BenchmarkCorePebble/anonymous's events in 5000-event batches with the runner's expiry
// sweep after each (window and hold age 1 minute, 5 s of clock per batch, so the sweep has work from the 12th
// batch on), for the sweep budget before issue 13 (500 keys per batch: the state grows without end) and now
// (500 + 4 per key written: it stays flat). The CPU per event is what keeping pace costs.
func BenchmarkCorePebbleSweep(b *testing.B) {
	events := make([]*schemas.RawEvent, 100_000)
	for i := range events {
		events[i] = benchEvent(b, i, 20_000)
	}
	for _, tc := range []struct {
		name   string
		budget func(*overlay) int
	}{
		{"fixed500", func(*overlay) int { return 500 }},
		{"perWrite", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newBatchRig(b, CoreConfig{DedupWindow: time.Minute, MaxHeldAge: time.Minute})
			r.budget, r.out = tc.budget, &encodingEmitter{}
			batch := make([]*schemas.RawEvent, 0, 5000)
			b.ResetTimer()
			b.ReportAllocs()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				ev := roundEvent(events, i)
				batch = append(batch, &ev)
				if len(batch) == cap(batch) || i == b.N-1 {
					r.raws(batch)
					batch = batch[:0]
					r.now = r.now.Add(5 * time.Second)
				}
			}
			reportRates(b, cpu0)
			b.StopTimer()
			b.ReportMetric(float64(r.keys()), "state-keys")
		})
	}
}
