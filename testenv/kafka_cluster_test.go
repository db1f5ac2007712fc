package testenv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

var clusterMinISR2 = map[string]*string{"min.insync.replicas": kadm.StringPtr("2")}

// TestClusterKafkaLeaderKilledMidProduce: a topic with RF 3 and min.insync.replicas 2, an idempotent acks=all
// producer, and the partition leader SIGKILLed while records are in flight. Every record is acknowledged in the
// end (the producer rides the failover), and every acknowledged record is in the log exactly once, at the offset
// its acknowledgement gave: nothing acknowledged was lost with the old leader, nothing was written twice.
func TestClusterKafkaLeaderKilledMidProduce(t *testing.T) {
	c := NewKafkaCluster(t)
	topic := c.CreateTopic("leader-kill", 1, 3, clusterMinISR2)
	leader := c.Leader(topic, 0)
	prod := c.Client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(2000))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const n = 20000
	offsets := make([]int64, n)
	var (
		acked    atomic.Int64
		mu       sync.Mutex
		failures []error
		killedAt time.Time
		firstAck atomic.Int64 // unix nanos of the first acknowledgement after the kill
	)
	for i := range n {
		if i == n/3 { // a third produced, some acknowledged, the rest in flight or still to come
			for acked.Load() < n/10 && ctx.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			c.Kill(leader)
			mu.Lock()
			killedAt = time.Now()
			mu.Unlock()
		}
		i := i
		prod.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(r *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Errorf("record %d: %w", i, err))
				mu.Unlock()
				return
			}
			offsets[i] = r.Offset
			acked.Add(1)
			mu.Lock()
			if !killedAt.IsZero() && r.Timestamp.After(killedAt) {
				firstAck.CompareAndSwap(0, time.Now().UnixNano())
			}
			mu.Unlock()
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatalf("flushing: %v", err)
	}
	t.Logf("all %d records acknowledged %s after the kill", n, time.Since(killedAt).Round(time.Millisecond))
	if len(failures) > 0 {
		t.Fatalf("%d of %d records failed, first: %v", len(failures), n, failures[0])
	}
	newLeader := c.Leader(topic, 0)
	if newLeader == leader {
		t.Fatalf("broker %d, SIGKILLed, still leads the partition", leader)
	}
	if f := firstAck.Load(); f > 0 {
		t.Logf("leader %d killed; broker %d leads; first acknowledgement of a record produced after the kill %s later",
			leader, newLeader, time.Unix(0, f).Sub(killedAt).Round(time.Millisecond))
	}

	// Read back from the survivors only.
	cl := c.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	at := make(map[int]int64, n)
	read := 0
	for read < n && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetching: %v", err) })
		fs.EachRecord(func(r *kgo.Record) {
			i, err := strconv.Atoi(string(r.Value))
			if err != nil {
				t.Fatalf("record at %d: value %q", r.Offset, r.Value)
			}
			if prev, dup := at[i]; dup {
				t.Fatalf("record %d written twice, at offsets %d and %d", i, prev, r.Offset)
			}
			at[i] = r.Offset
			read++
		})
	}
	for i := range n {
		off, ok := at[i]
		if !ok {
			t.Fatalf("record %d, acknowledged at offset %d, is not in the log (read %d records)", i, offsets[i], read)
		}
		if off != offsets[i] {
			t.Fatalf("record %d acknowledged at offset %d but read at %d", i, offsets[i], off)
		}
	}

	t.Logf("read back %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	restart := stopwatch(func() { c.Start(leader) })
	insync := stopwatch(func() { c.WaitInSync(topic, time.Minute) })
	t.Logf("broker %d started again in %s, back in the ISR %s later", leader, restart, insync)
}

// TestClusterKafkaNotEnoughReplicas: with two of the three replicas down, the survivor leads with an ISR of one,
// below min.insync.replicas 2. An acks=all write is then refused with NOT_ENOUGH_REPLICAS and is not appended,
// by an idempotent producer and a plain one alike; an acks=1 write to the same partition still succeeds (the
// refusal is the replication guarantee, not a dead partition); once the two are back, acks=all succeeds again.
// (The idempotent producer the stages use retries NOT_ENOUGH_REPLICAS until its delivery timeout and reports the
// timeout; a producer without retries shows the broker's error itself.)
func TestClusterKafkaNotEnoughReplicas(t *testing.T) {
	c := NewKafkaCluster(t)
	topic := c.CreateTopic("min-isr", 1, 3, clusterMinISR2)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all := c.Client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err := all.ProduceSync(ctx, kgo.StringRecord("before")).FirstErr(); err != nil {
		t.Fatalf("acks=all with every replica up: %v", err)
	}

	survivor := c.Leader(topic, 0)
	var killed []int32
	for _, id := range KafkaClusterBrokerIDs {
		if id != survivor {
			c.Kill(id)
			killed = append(killed, id)
		}
	}
	c.WaitPartition(topic, 0, 30*time.Second, fmt.Sprintf("ISR shrunk to [%d] after killing %v", survivor, killed),
		func(p kadm.PartitionDetail) bool {
			return p.Leader == survivor && slices.Equal(p.ISR, []int32{survivor})
		})

	// The broker's answer, seen through a producer that does not retry it away.
	plain := c.Client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(),
		kgo.RecordRetries(1))
	err := plain.ProduceSync(ctx, kgo.StringRecord("refused")).FirstErr()
	if !errors.Is(err, kerr.NotEnoughReplicas) {
		t.Fatalf("acks=all produce with an ISR of one: %v, want NOT_ENOUGH_REPLICAS", err)
	}
	t.Logf("acks=all produce with an ISR of one: refused: %v", err)
	// The idempotent producer (what the stages use) retries NOT_ENOUGH_REPLICAS until its delivery timeout.
	idem := c.Client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(5*time.Second))
	err = idem.ProduceSync(ctx, kgo.StringRecord("refused")).FirstErr()
	if err == nil {
		t.Fatal("idempotent acks=all produce with an ISR of one: acknowledged")
	}
	t.Logf("idempotent acks=all produce with an ISR of one: refused: %v", err)
	if end := c.endOffset(ctx, topic); end != 1 {
		t.Fatalf("end offset %d after the refused writes, want 1: a refused record was appended", end)
	}
	one := c.Client(kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err := one.ProduceSync(ctx, kgo.StringRecord("acks=1")).FirstErr(); err != nil {
		t.Fatalf("acks=1 produce to the live leader: %v", err)
	}

	for _, id := range killed {
		c.Start(id)
	}
	c.WaitInSync(topic, time.Minute)
	if err := all.ProduceSync(ctx, kgo.StringRecord("after")).FirstErr(); err != nil {
		t.Fatalf("acks=all once the replicas are back: %v", err)
	}
}

func (c *KafkaCluster) endOffset(ctx context.Context, topic string) int64 {
	c.t.Helper()
	ends, err := c.Admin.ListEndOffsets(ctx, topic)
	if err != nil {
		c.t.Fatalf("end offsets of %s: %v", topic, err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok || o.Err != nil {
		c.t.Fatalf("end offset of %s/0: %v", topic, o.Err)
	}
	return o.Offset
}
