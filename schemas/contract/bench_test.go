package contract

import (
	"syscall"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// benchEvent is the ingest benchmarks' 442-byte Segment track event.
var benchEvent = []byte(`{"type":"track","event":"Signed Up","anonymousId":"anon-00000001","messageId":"msg-anon-00000001-1",` +
	`"properties":{"plan":"pro","source":"landing","value":1},"context":{"ip":"203.0.113.9",` +
	`"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing",` +
	`"path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},` +
	`"timestamp":"2026-11-30T05:00:00.000Z","sentAt":"2026-11-30T05:00:00.100Z"}`)

// cpuLoop runs f once per iteration and reports this process's CPU time per iteration besides the wall time:
// on a shared machine it is the steadier figure.
func cpuLoop(b *testing.B, f func()) {
	var ru syscall.Rusage
	cpu := func() int64 {
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return ru.Utime.Nano() + ru.Stime.Nano()
	}
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	c0 := cpu()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(cpu()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkCanonicalize is the contract's canonicalizer on the benchmark event (what Derive spends on the
// canonical form), against go-json-experiment's jsontext.Value.Canonicalize with the same integer rule: the
// measurement behind writing our own (BENCHMARKS.md).
func BenchmarkCanonicalize(b *testing.B) {
	b.Run("contract", func(b *testing.B) {
		var c canon
		cpuLoop(b, func() {
			if err := c.event(benchEvent, true, true); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("jsontext", func(b *testing.B) {
		buf := make(jsontext.Value, 0, 1024)
		cpuLoop(b, func() {
			buf = append(buf[:0], benchEvent...)
			if err := buf.Canonicalize(jsontext.CanonicalizeRawInts(false)); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("split", func(b *testing.B) { // the validating scan alone, for scale
		var body Body
		cpuLoop(b, func() {
			if err := SplitBody(benchEvent, &body); err != nil {
				b.Fatal(err)
			}
		})
	})
}
