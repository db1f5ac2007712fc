package contract

import (
	"crypto/sha256"
	"testing"

	"github.com/signalstage/signalstage/schemas"
)

func BenchmarkScratchFinish(b *testing.B) {
	d := Deriver{Unsafe: true}
	var f schemas.EventFields
	in := Input{Source: schemas.SourceSegment, ReceivedAt: received}
	if _, err := d.Scan(benchEvent, false); err != nil {
		b.Fatal(err)
	}
	cpuLoop(b, func() { d.Finish(in, &f) })
}
func BenchmarkScratchSHA(b *testing.B) {
	d := Deriver{Unsafe: true}
	d.Scan(benchEvent, false)
	cpuLoop(b, func() { sha256.Sum256(d.c.out) })
}

func BenchmarkScratchCanonSorted(b *testing.B) {
	var c canon
	c.event(benchEvent, true, false)
	sorted := append([]byte(nil), c.out...)
	var c2 canon
	cpuLoop(b, func() { c2.event(sorted, true, true) })
}
func BenchmarkScratchSplitSorted(b *testing.B) {
	var c canon
	c.event(benchEvent, true, false)
	sorted := append([]byte(nil), c.out...)
	var body Body
	cpuLoop(b, func() { SplitBody(sorted, &body) })
}

func BenchmarkScratchSkipComposite(b *testing.B) {
	cpuLoop(b, func() { skipComposite(benchEvent, 0, 0) })
}
