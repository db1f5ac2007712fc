package testenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Environment variables of the local clusters (`testenv/services.sh env`; defaults match services.sh).
const (
	EnvKafkaClusterBrokers     = "SIGNALSTAGE_KAFKA_CLUSTER_BROKERS"
	DefaultKafkaClusterBrokers = "127.0.0.1:29091,127.0.0.1:29092,127.0.0.1:29093"
)

// Node ids of the local Kafka cluster: brokers 1-3 (kafka-broker-N), KRaft controllers 101-103
// (kafka-controller-N).
var (
	KafkaClusterBrokerIDs     = []int32{1, 2, 3}
	KafkaClusterControllerIDs = []int32{101, 102, 103}
)

// KafkaCluster is a test's handle on the local three-broker cluster that `make up-cluster` starts (separate
// KRaft controllers, RF 3 and min.insync.replicas 2 by default): a topic prefix of its own, an admin client, and
// per-node Kill/Stop/Start. Nodes the test took down are started again, and its topics deleted, when it ends, so
// the next test finds all six nodes up. Cluster tests must not run in parallel with each other (`make
// test-cluster` runs packages one at a time): they take shared nodes down.
type KafkaCluster struct {
	// Brokers is the bootstrap list, every broker.
	Brokers []string
	// Prefix is unique to the test ("t_<test>_<hex>.").
	Prefix string
	Admin  *kadm.Client

	t    testing.TB
	sh   servicesScript
	down map[int32]bool
}

// NewKafkaCluster connects to the running cluster; it skips the test unless SIGNALSTAGE_CLUSTER=1 and fails it
// if the cluster does not answer. A node found down (left by a test that crashed) is started first.
func NewKafkaCluster(t testing.TB) *KafkaCluster {
	t.Helper()
	requireClusterSuite(t)
	c := &KafkaCluster{
		Brokers: strings.Split(getenv(EnvKafkaClusterBrokers, DefaultKafkaClusterBrokers), ","),
		Prefix:  uniqueName(t, 40) + ".",
		t:       t,
		down:    map[int32]bool{},
	}
	c.Admin = kadm.NewClient(c.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	md, err := c.Admin.BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("kafka cluster at %s does not answer (%v): %s", strings.Join(c.Brokers, ","), err, howToStartCluster)
	}
	if len(md.Brokers) < len(KafkaClusterBrokerIDs) {
		t.Logf("kafka cluster: only brokers %v are live; starting the others", md.Brokers.NodeIDs())
		c.sh.run(t, "up", "kafka-cluster")
	}
	t.Cleanup(c.cleanup)
	return c
}

func (c *KafkaCluster) cleanup() {
	var units []string
	for id := range c.down {
		units = append(units, kafkaUnit(id))
	}
	if len(units) > 0 {
		slices.Sort(units)
		if out, err := c.sh.try(append([]string{"up"}, units...)...); err != nil {
			c.t.Errorf("starting %v again after the test: %v\n%s", units, err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if topics, err := c.Admin.ListTopics(ctx); err == nil {
		var mine []string
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, c.Prefix) {
				mine = append(mine, name)
			}
		}
		if len(mine) > 0 {
			_, _ = c.Admin.DeleteTopics(ctx, mine...)
		}
	}
}

// kafkaUnit is services.sh's name of a node: kafka-broker-N or kafka-controller-N.
func kafkaUnit(id int32) string {
	if id > 100 {
		return fmt.Sprintf("kafka-controller-%d", id-100)
	}
	return fmt.Sprintf("kafka-broker-%d", id)
}

func (c *KafkaCluster) checkNode(id int32) {
	c.t.Helper()
	if !slices.Contains(KafkaClusterBrokerIDs, id) && !slices.Contains(KafkaClusterControllerIDs, id) {
		c.t.Fatalf("kafka cluster: no node %d (brokers %v, controllers %v)", id, KafkaClusterBrokerIDs, KafkaClusterControllerIDs)
	}
}

// Kill SIGKILLs node id (a broker 1-3 or a controller 101-103) and returns once the process is gone.
func (c *KafkaCluster) Kill(id int32) {
	c.t.Helper()
	c.checkNode(id)
	c.down[id] = true
	c.sh.run(c.t, "kill", kafkaUnit(id))
}

// Stop stops node id with SIGTERM (a broker shuts down in a controlled way, moving its leaderships first) and
// waits until it has exited.
func (c *KafkaCluster) Stop(id int32) {
	c.t.Helper()
	c.checkNode(id)
	c.down[id] = true
	c.sh.run(c.t, "down", kafkaUnit(id))
}

// Start starts node id again on its data and waits until it is ready: a broker registered, unfenced and live in
// the metadata; a controller caught up with the quorum leader. Its replicas may still be catching up: see
// WaitInSync.
func (c *KafkaCluster) Start(id int32) {
	c.t.Helper()
	c.checkNode(id)
	c.sh.run(c.t, "up", kafkaUnit(id))
	delete(c.down, id)
}

// Kafka returns a handle like NewKafka's on the cluster: the deployment's topics under a prefix of its own,
// created with the stages' default replication (on this cluster 3 replicas, min.insync.replicas 2) and waited for
// until every replica is in sync. They are deleted when the test ends.
func (c *KafkaCluster) Kafka(partitions int32) *Kafka {
	c.t.Helper()
	k := newKafka(c.t, c.Brokers, partitions, schemas.Replication{})
	for _, s := range k.Topics.Specs() {
		c.WaitInSync(s.Name, time.Minute)
	}
	return k
}

// BrokerAddr returns broker id's address.
func (c *KafkaCluster) BrokerAddr(id int32) string { return c.Brokers[id-1] }

// Client returns a client of the cluster with opts, closed when the test ends.
func (c *KafkaCluster) Client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, opts...)...)
	if err != nil {
		c.t.Fatalf("kafka client: %v", err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// CreateTopic creates Prefix+name with partitions and replicationFactor and the topic configs, waits until every
// broker's metadata shows every partition with a leader and a full ISR, and returns the full name.
func (c *KafkaCluster) CreateTopic(name string, partitions int32, replicationFactor int16, configs map[string]*string) string {
	c.t.Helper()
	full := c.Prefix + name
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Admin.CreateTopic(ctx, partitions, replicationFactor, configs, full)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		c.t.Fatalf("creating %s: %v", full, err)
	}
	c.WaitInSync(full, 30*time.Second)
	return full
}

// Partition returns the current metadata of one partition (leader, replicas, ISR).
func (c *KafkaCluster) Partition(topic string, partition int32) (kadm.PartitionDetail, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	td, err := c.Admin.ListTopics(ctx, topic)
	if err != nil {
		return kadm.PartitionDetail{}, err
	}
	d, ok := td[topic]
	if !ok || d.Err != nil {
		return kadm.PartitionDetail{}, fmt.Errorf("topic %s: not in the metadata (%v)", topic, d.Err)
	}
	p, ok := d.Partitions[partition]
	if !ok {
		return kadm.PartitionDetail{}, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	return p, nil
}

// Leader returns the broker that leads the partition now, failing the test if it has none.
func (c *KafkaCluster) Leader(topic string, partition int32) int32 {
	c.t.Helper()
	p, err := c.Partition(topic, partition)
	if err == nil && p.Leader < 0 {
		err = fmt.Errorf("no leader (%v)", p.Err)
	}
	if err != nil {
		c.t.Fatalf("leader of %s/%d: %v", topic, partition, err)
	}
	return p.Leader
}

// WaitPartition polls the partition's metadata until ok accepts it, failing the test after timeout with the
// last metadata seen and what.
func (c *KafkaCluster) WaitPartition(topic string, partition int32, timeout time.Duration, what string,
	ok func(kadm.PartitionDetail) bool) kadm.PartitionDetail {
	c.t.Helper()
	var last kadm.PartitionDetail
	err := pollUntil(context.Background(), timeout, func(context.Context) error {
		p, err := c.Partition(topic, partition)
		if err != nil {
			return err
		}
		last = p
		if !ok(p) {
			return fmt.Errorf("leader %d, replicas %v, isr %v", p.Leader, p.Replicas, p.ISR)
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("%s/%d: %s: not after %s: %v", topic, partition, what, timeout, err)
	}
	return last
}

// WaitInSync waits until every partition of topic has a leader and every replica in its ISR.
func (c *KafkaCluster) WaitInSync(topic string, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		td, err := c.Admin.ListTopics(ctx, topic)
		last = fmt.Sprint(err)
		if err == nil && td[topic].Err == nil && len(td[topic].Partitions) > 0 {
			synced := true
			for _, p := range td[topic].Partitions {
				if p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
					synced = false
					last = fmt.Sprintf("partition %d: leader %d, replicas %v, isr %v", p.Partition, p.Leader, p.Replicas, p.ISR)
				}
			}
			if synced {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: replicas not in sync after %s: %s", topic, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
