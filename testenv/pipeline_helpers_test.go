package testenv

import (
	"crypto/sha256"
	"os"
	"testing"
)

// TestPipelineBenchReadings: what BenchmarkPipeline reads is right: a metric summed over the series whose labels
// match, and this process's CPU from /proc growing by about the CPU it burns.
func TestPipelineBenchReadings(t *testing.T) {
	m := metricsText{
		`# HELP signalstage_processor_records_total Input records`,
		`signalstage_processor_records_total{topic="raw"} 1.049e+06`,
		`signalstage_processor_records_total{topic="identities"} 14362`,
		`signalstage_processor_signals_total{kind="cold"} 900`,
		`signalstage_processor_signals_total{kind="linked"} 100`,
		`signalstage_processor_signals_total_other 5`,
	}
	if got := m.sum("signalstage_processor_records_total", `topic="raw"`); got != 1_049_000 {
		t.Errorf("raw records = %v, want 1049000", got)
	}
	if got := m.sum("signalstage_processor_signals_total", ""); got != 1000 {
		t.Errorf("signals = %v, want 1000", got)
	}
	before := procCPU(t, os.Getpid())
	sum := sha256.Sum256(nil)
	for range 2_000_000 {
		sum = sha256.Sum256(sum[:])
	}
	if d := procCPU(t, os.Getpid()) - before; d < 0.1 {
		t.Errorf("2,000,000 SHA-256 rounds took %.2f CPU-seconds by /proc, want at least 0.1", d)
	}
	if rss, hwm := procRSS(os.Getpid()); rss <= 0 || hwm < rss {
		t.Errorf("RSS %d, peak %d", rss, hwm)
	}
}
