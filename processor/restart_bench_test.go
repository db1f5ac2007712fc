package processor

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// BenchmarkRestartAfterKill measures what an operator sees after a crash: a processor instance (one of one) is
// SIGKILLed, started again on its disk, and an event is produced right then; reported is the time from the
// restart to that event's signal committed on signals.resolved (restart-to-first-event-s). dynamic is a dynamic
// group member (no -instance-id): the group waits for the dead member's session to expire before it assigns the
// partitions again; static rejoins as itself.
//
//	go test -run '^$' -bench BenchmarkRestartAfterKill -benchtime 3x ./processor/
func BenchmarkRestartAfterKill(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "processor")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/signalstage/signalstage/processor/cmd/processor").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name  string
		extra []string
	}{{"dynamic", nil}, {"static", []string{"-instance-id", "bench"}}} {
		b.Run(tc.name, func(b *testing.B) {
			k := testenv.NewKafka(b, 6)
			i := newInstance(b, bin, k, "bench", tc.extra...)
			i.start()
			produce(b, k, rawIn{"t", `{"type":"track","anonymousId":"warm","event":"E","messageId":"warm"}`})
			waitSignal(b, k, 1, time.Minute)
			var total time.Duration
			b.ResetTimer()
			for n := range b.N {
				i.kill()
				start := time.Now()
				i.start()
				produce(b, k, rawIn{"t", fmt.Sprintf(`{"type":"track","anonymousId":"v%d","event":"E","messageId":"m%d"}`, n, n)})
				waitSignal(b, k, n+2, 2*time.Minute)
				total += time.Since(start)
			}
			b.StopTimer()
			b.ReportMetric(total.Seconds()/float64(b.N), "restart-to-first-event-s")
		})
	}
}

// waitSignal waits until signals.resolved holds n committed signals.
func waitSignal(b testing.TB, k *testenv.Kafka, n int, timeout time.Duration) {
	b.Helper()
	cl := k.Client(kgo.ConsumeTopics(k.Topic(schemas.TopicResolved)), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatalf("%d of %d signals within %s", got, n, timeout)
		}
		got += fs.NumRecords()
	}
	cl.Close()
}
