package processor

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestClusterOutputWithoutLeader: an output partition with no leader for longer than the delivery timeout. The
// client fails records it never sent without failing the transaction, so a transaction that committed anyway
// would commit the input offsets of signals it never wrote (found by TestClusterPipelineLeaderKilled: 34 of 4 250
// accepted events lost after two brokers were down). signals.resolved is placed on broker 3 alone and broker 3 is
// SIGKILLed while events keep arriving; once it is back, signals.resolved holds every signal exactly once.
func TestClusterOutputWithoutLeader(t *testing.T) {
	c := testenv.NewKafkaCluster(t)
	k := c.Kafka(6)
	resolved := k.Topic(schemas.TopicResolved)
	placeOnBroker(t, c, k, schemas.TopicResolved, 3)
	bin := buildProcessor(t)
	s := newStream(t, 6000, 300)

	produce(t, k, s.ins[:2000]...)
	p := startBinary(t, bin, k, t.TempDir(), "p1", "-transactional-id", k.Prefix+"p1")
	if got := k.ReadAll(resolved, 1000, 2*time.Minute); len(got) < 1000 {
		t.Fatalf("only %d signals before the kill", len(got))
	}
	// Kill with nothing in flight, and produce only once the partitions have no leader: the client then knows the
	// new outputs were never sent, which is the case where it fails them on the delivery timeout.
	waitNoLag(t, k, k.Prefix+"processor", 2*time.Minute)
	c.Kill(3)
	for p := range k.Topics.Partitions {
		c.WaitPartition(resolved, p, time.Minute, "no leader", func(d kadm.PartitionDetail) bool { return d.Leader < 0 })
	}
	t.Logf("broker 3, the only replica of %s, SIGKILLed; no leader", resolved)
	produce(t, k, s.ins[2000:4000]...)
	// Wait until a batch to the leaderless partitions is past the delivery timeout. The client then either fails
	// its records (when it knows they were never sent), and that transaction must not commit, or keeps them until
	// the leader is back; which one depends on the moment of the kill.
	log := p.Stderr.(*os.File).Name()
	deadline := time.Now().Add(2 * time.Minute)
	var b []byte
	for {
		var err error
		b, err = os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"batch0_should_fail":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no produce timed out in 2 minutes with %s leaderless; processor log:\n%s", resolved, b)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("a produce to %s timed out (failed: %v)", resolved, strings.Contains(string(b), "kafka session failed"))
	c.Start(3)
	produce(t, k, s.ins[4000:]...)
	checkExactlyOnce(t, k, s)
}

// placeOnBroker recreates the topic base of k with every partition's only replica on broker, keeping the
// deployment's topic configs.
func placeOnBroker(t *testing.T, c *testenv.KafkaCluster, k *testenv.Kafka, base string, broker int32) {
	t.Helper()
	name := k.Topic(base)
	var spec schemas.TopicSpec
	for _, s := range k.Topics.Specs() {
		if s.Name == name {
			spec = s
		}
	}
	if spec.Name == "" {
		t.Fatalf("no topic spec named %s", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := k.Admin.DeleteTopics(ctx, name); err != nil {
		t.Fatalf("deleting %s: %v", name, err)
	}
	cl := c.Client()
	for {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 30_000
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, -1, -1
		for p := range spec.Partitions {
			a := kmsg.NewCreateTopicsRequestTopicReplicaAssignment()
			a.Partition, a.Replicas = p, []int32{broker}
			rt.ReplicaAssignment = append(rt.ReplicaAssignment, a)
		}
		for key, v := range spec.Configs {
			cfg := kmsg.NewCreateTopicsRequestTopicConfig()
			cfg.Name, cfg.Value = key, kmsg.StringPtr(v)
			rt.Configs = append(rt.Configs, cfg)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
		}
		if err == nil {
			break
		}
		// The deletion completes asynchronously.
		if !errors.Is(err, kerr.TopicAlreadyExists) || ctx.Err() != nil {
			t.Fatalf("creating %s on broker %d: %v", name, broker, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Metadata of the deleted topic may linger on some brokers for a moment.
	for p := range spec.Partitions {
		c.WaitPartition(name, p, time.Minute, "only replica on broker "+strconv.Itoa(int(broker)), func(d kadm.PartitionDetail) bool {
			return d.Leader == broker && len(d.Replicas) == 1 && d.Replicas[0] == broker
		})
	}
}

// waitNoLag waits until group has committed every record of its input topics.
func waitNoLag(t *testing.T, k *testenv.Kafka, group string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lags, err := k.Admin.Lag(ctx, group)
		cancel()
		gl := lags[group]
		if err == nil && gl.Error() == nil && gl.Lag.Total() == 0 && len(gl.Lag) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s still lags after %s: %v %v", group, timeout, err, gl.Lag.TotalByTopic())
		}
		time.Sleep(500 * time.Millisecond)
	}
}
