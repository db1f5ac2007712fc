package processor

import (
	"context"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestClusterProcessorScaleOutAndIn: on the 3-broker cluster (topics with 3 replicas, min.insync.replicas 2),
// one processor subprocess works through a stream that keeps arriving; two more instances join it (each with its
// own state directory and transactional id: six partitions over three instances, their state restored from the
// changelog on the new owner), and later both leave with SIGTERM, handing their partitions back. signals.resolved,
// read committed, holds each (id, version) exactly once and exactly what the model gives, so held (cold) visitors
// kept their state across both moves.
func TestClusterProcessorScaleOutAndIn(t *testing.T) {
	c := testenv.NewKafkaCluster(t)
	k := c.Kafka(6)
	bin := buildProcessor(t)
	s := newStream(t, 12_000, 300)
	group := k.Prefix + "processor"
	resolved := k.Topic(schemas.TopicResolved)

	produce(t, k, s.ins[:3000]...)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 3000; i < len(s.ins); i += 500 {
			produce(t, k, s.ins[i:i+500]...)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	instance := func(name string) []string { return []string{"-transactional-id", k.Prefix + name} }
	startBinary(t, bin, k, t.TempDir(), "p1", instance("p1")...)
	if got := k.ReadAll(resolved, 1500, 2*time.Minute); len(got) < 1500 {
		t.Fatalf("only %d signals from the first instance", len(got))
	}
	p2 := startBinary(t, bin, k, t.TempDir(), "p2", instance("p2")...)
	p3 := startBinary(t, bin, k, t.TempDir(), "p3", instance("p3")...)
	waitMembers(t, k, group, 3, 2*time.Minute)
	t.Logf("three instances in the group")
	if got := k.ReadAll(resolved, 5000, 2*time.Minute); len(got) < 5000 {
		t.Fatalf("only %d signals with three instances", len(got))
	}
	for _, cmd := range []*exec.Cmd{p2, p3} {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("an instance stopped with SIGTERM exited with %v", err)
		}
	}
	waitMembers(t, k, group, 1, 2*time.Minute)
	t.Logf("back to one instance")
	<-produced
	// The shared machine may be slow to catch up (checkExactlyOnce's own wait is a minute): wait for the count
	// first, then check the content.
	if got := k.ReadAll(resolved, len(s.want), 5*time.Minute); len(got) < len(s.want) {
		lags, _ := k.Admin.Lag(context.Background(), group)
		t.Fatalf("only %d of %d signals after 5 minutes; lag %v", len(got), len(s.want), lags[group].Lag.TotalByTopic())
	}
	checkExactlyOnce(t, k, s)
}

// waitMembers waits until the consumer group has n members in a stable state.
func waitMembers(t *testing.T, k *testenv.Kafka, group string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		gs, err := k.Admin.DescribeGroups(ctx, group)
		cancel()
		if err == nil {
			g := gs[group]
			if g.Err == nil && g.State == "Stable" && len(g.Members) == n {
				return
			}
			last = g.State + " with " + strconv.Itoa(len(g.Members)) + " members"
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s: not %d stable members after %s: %s", group, n, timeout, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
