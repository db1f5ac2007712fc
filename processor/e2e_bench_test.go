package processor

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/signalstage/signalstage/testenv"
)

// BenchmarkEndToEnd runs one processor over pre-produced events (PROCESSOR_E2E_EVENTS, default 30,000) through the local broker, with transactions,
// for several transaction sizes (-max-poll-records: the commit interval in records). It reports events per
// second from the first committed batch to the last (group join excluded), transactions per second and the
// mean time to end one transaction (flush + offsets + EndTxn).
func BenchmarkEndToEnd(b *testing.B) {
	n := 30_000
	if v, err := strconv.Atoi(os.Getenv("PROCESSOR_E2E_EVENTS")); err == nil && v > 0 {
		n = v
	}
	ins := make([]rawIn, n)
	for i := range ins {
		ev := benchEvent(b, i, 5_000)
		ins[i] = rawIn{"bench", string(ev.Payload)}
	}
	for _, poll := range []int{200, 1000, 5000} {
		b.Run(fmt.Sprintf("records-per-txn=%d", poll), func(b *testing.B) {
			var events, secs, txns, endSecs float64
			for range b.N {
				k := testenv.NewKafka(b, 6)
				produce(b, k, ins...)
				r := startProcessor(b, k, b.TempDir(), "bench", func(c *Config) { c.MaxPollRecords = poll })
				var t0 time.Time
				var first float64
				deadline := time.Now().Add(5 * time.Minute)
				for {
					done := counterValue(b, r.reg, "signalstage_processor_records_total", map[string]string{"topic": "raw"})
					if done > 0 && t0.IsZero() {
						t0, first = time.Now(), done
					}
					if done >= float64(n) {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("processed %v of %d", done, n)
					}
					time.Sleep(20 * time.Millisecond)
				}
				events += float64(n) - first
				secs += time.Since(t0).Seconds()
				cnt, sum := histogram(b, r.reg, "signalstage_processor_transaction_end_seconds")
				txns += cnt
				endSecs += sum
				r.stop(b)
			}
			b.ReportMetric(events/secs, "events/s")
			b.ReportMetric(txns/secs, "txns/s")
			b.ReportMetric(endSecs/txns*1000, "ms/txn-end")
			b.ReportMetric(endSecs/secs*100, "%time-in-txn-end")
		})
	}
}

func histogram(t testing.TB, reg *prometheus.Registry, name string) (count, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				count += float64(m.GetHistogram().GetSampleCount())
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}
