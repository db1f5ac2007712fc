package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPrivateKafkaKillStopRestart proves the private broker is a real, separate process: SIGKILLed it is gone
// (a client cannot reach it), restarted on the same data it still has every acknowledged record and serves
// transactions and group commits at once (Start waits for the coordinators), and a SIGTERM stop and start keep
// the data too. Its cleanup leaves no process, no listener and no directory behind.
func TestPrivateKafkaKillStopRestart(t *testing.T) {
	t.Parallel() // its broker starts while the SASL test's do
	var dir string
	var addr []string
	t.Run("broker", func(t *testing.T) {
		p := NewPrivateKafka(t)
		dir, addr = p.Dir, p.Brokers()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		const topic = "private-restart"
		adm := kadm.NewClient(p.Client())
		if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
			t.Fatalf("creating %s: %v", topic, err)
		}
		produceNumbered(ctx, t, p.Client(kgo.DefaultProduceTopic(topic)), 0, 100)

		p.Kill()
		if err := privateBrokerAnswers(addr, 3*time.Second); err == nil {
			t.Fatal("the broker still answers metadata requests after Kill")
		}
		restart := stopwatch(p.Start)

		// Coordinators must be ready when Start returns: a transaction and a group commit, each within a bound
		// far below the client's own retry budget.
		txn := p.Client(kgo.DefaultProduceTopic(topic), kgo.TransactionalID("private-restart-txn"))
		tctx, tcancel := context.WithTimeout(ctx, 15*time.Second)
		defer tcancel()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		produceNumbered(tctx, t, txn, 100, 10)
		if err := txn.EndTransaction(tctx, kgo.TryCommit); err != nil {
			t.Fatalf("committing a transaction right after Start: %v", err)
		}
		offsets := kadm.Offsets{}
		offsets.AddOffset(topic, 0, 1, -1)
		if resp, err := adm.CommitOffsets(tctx, "private-restart-group", offsets); err != nil || resp.Error() != nil {
			t.Fatalf("committing group offsets right after Start: %v %v", err, resp.Error())
		}
		requireNumbered(t, []kgo.Opt{kgo.SeedBrokers(addr...)}, topic, 110)

		p.Stop()
		if err := privateBrokerAnswers(addr, 3*time.Second); err == nil {
			t.Fatal("the broker still answers metadata requests after Stop")
		}
		stopStart := stopwatch(p.Start)
		requireNumbered(t, []kgo.Opt{kgo.SeedBrokers(addr...)}, topic, 110)
		t.Logf("start after SIGKILL: %s; after SIGTERM: %s", restart, stopStart)
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the private broker's directory %s is still there after the test (%v)", dir, err)
	}
	if c, err := net.DialTimeout("tcp", addr[0], time.Second); err == nil {
		_ = c.Close()
		out, _ := exec.Command("ss", "-tanp").CombinedOutput()
		t.Fatalf("something still listens on %s after the test\n%s", addr[0], out)
	}
}

// privateBrokerAnswers returns nil if a fresh client gets metadata from addr within timeout.
func privateBrokerAnswers(addr []string, timeout time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr...), kgo.DialTimeout(time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}

// produceNumbered produces values "v<from>" ... "v<from+n-1>" synchronously and fails the test on an error.
func produceNumbered(ctx context.Context, t testing.TB, cl *kgo.Client, from, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "v%d", from+i)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// requireNumbered reads topic from the start (a client with the seeds options), read committed, and fails the test unless it holds exactly the n
// values "v0" ... "v<n-1>", each once.
func requireNumbered(t testing.TB, seeds []kgo.Opt, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, seeds...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[string]int{}
	total := 0
	for total < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(tp string, p int32, err error) {
			if ctx.Err() == nil {
				t.Fatalf("fetching %s/%d: %v", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { seen[string(r.Value)]++; total++ })
	}
	for i := range n {
		if c := seen[fmt.Sprintf("v%d", i)]; c != 1 {
			t.Fatalf("value v%d read %d times (read %d records, want %d)", i, c, total, n)
		}
	}
	if total != n {
		t.Fatalf("read %d records, want %d", total, n)
	}
}
