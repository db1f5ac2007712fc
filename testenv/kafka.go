package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// Kafka is a test's handle on the real broker: its own topic prefix, an admin client, and the topic set of a
// deployment under that prefix. Topics under the prefix are deleted when the test ends.
type Kafka struct {
	Brokers []string
	// Prefix is unique to the test ("t_<test>_<hex>.").
	Prefix string
	// Topics is the deployment topic config under Prefix; Ensure has already created them.
	Topics schemas.Config
	Admin  *kadm.Client
	t      testing.TB
}

// NewKafka connects to the broker, fails the test if it does not answer, and creates the signalstage topics with
// partitions partitions under a unique prefix.
func NewKafka(t testing.TB, partitions int32) *Kafka {
	t.Helper()
	return NewKafkaOn(t, KafkaBrokers(), partitions)
}

// NewKafkaOn is NewKafka on the given brokers (a PrivateKafka's, which a test may kill and restart).
func NewKafkaOn(t testing.TB, brokers []string, partitions int32) *Kafka {
	t.Helper()
	return newKafka(t, brokers, partitions, schemas.Replication{Factor: 1})
}

// newKafka is NewKafkaOn with the topics replicated as rep says.
func newKafka(t testing.TB, brokers []string, partitions int32, rep schemas.Replication) *Kafka {
	t.Helper()
	k := &Kafka{Brokers: brokers, Prefix: uniqueName(t, 40) + ".", t: t}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	k.Admin = kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := k.Admin.BrokerMetadata(ctx); err != nil {
		cl.Close()
		t.Fatalf("kafka at %s does not answer (%v): %s", strings.Join(k.Brokers, ","), err, howToStart)
	}
	k.Topics = schemas.Config{Prefix: k.Prefix, Partitions: partitions, Replication: rep}
	// Creating the topics and seeing them listed get their own, longer budget: the broker answered, and on a
	// loaded machine (2 cores, several test binaries, a JVM each) seven creations took more than the 15 s that
	// once covered it all (TestRulesAPIOnAdminListener failed that way).
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if _, err := k.Topics.Ensure(ctx, k.Admin); err != nil {
		cl.Close()
		t.Fatalf("creating topics: %v", err)
	}
	// The client that checked for the topics before creating them caches their absence for a while; the test
	// gets a fresh one, and only once the broker lists every topic with its partitions.
	cl.Close()
	if cl, err = kgo.NewClient(kgo.SeedBrokers(k.Brokers...)); err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	k.Admin = kadm.NewClient(cl)
	for _, spec := range k.Topics.Specs() {
		for {
			td, err := k.Admin.ListTopics(ctx, spec.Name)
			if err == nil && td[spec.Name].Err == nil && int32(len(td[spec.Name].Partitions)) == spec.Partitions {
				break
			}
			if err == nil {
				err = fmt.Errorf("listed with %d partitions, error %v", len(td[spec.Name].Partitions), td[spec.Name].Err)
			}
			if ctx.Err() != nil {
				cl.Close()
				t.Fatalf("topic %s not visible %s after its creation began: %v", spec.Name, time.Since(start).Round(time.Millisecond), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if topics, err := k.Admin.ListTopics(ctx); err == nil {
			var mine []string
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, k.Prefix) {
					mine = append(mine, name)
				}
			}
			if len(mine) > 0 {
				_, _ = k.Admin.DeleteTopics(ctx, mine...)
			}
		}
		cl.Close()
	})
	return k
}

// Topic returns the full name of a topic of the deployment, such as schemas.TopicRaw.
func (k *Kafka) Topic(base string) string { return k.Topics.Name(base) }

// Client returns a client on the broker with opts, closed when the test ends.
func (k *Kafka) Client(opts ...kgo.Opt) *kgo.Client {
	k.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...)}, opts...)...)
	if err != nil {
		k.t.Fatalf("kafka client: %v", err)
	}
	k.t.Cleanup(cl.Close)
	return cl
}

// ReadAll reads topic from the start, read committed, until it has read want records or timeout passes, and
// returns what it read. It fails the test only on client errors; callers assert on the count.
func (k *Kafka) ReadAll(topic string, want int, timeout time.Duration) []*kgo.Record {
	k.t.Helper()
	cl := k.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		fs.EachError(func(t string, p int32, err error) { k.t.Fatalf("fetching %s/%d: %v", t, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// ReadToEnd reads topic from the start, read committed, up to the last stable offset each partition has when it
// is called, and returns the data records (transaction markers left out). Unlike ReadAll it does not depend on a
// timeout to decide that nothing more is coming, so a slow machine makes it slower, not shorter; timeout only
// bounds a broker that stops answering, and fails the test.
func (k *Kafka) ReadToEnd(topic string, timeout time.Duration) []*kgo.Record {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ends, err := k.Admin.ListCommittedOffsets(ctx, topic)
	if err != nil {
		k.t.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	left := map[int32]int64{} // partition -> last stable offset still to reach
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			k.t.Fatalf("end offset of %s/%d: %v", topic, o.Partition, o.Err)
		}
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl := k.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	var out []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			k.t.Fatalf("reading %s to its end: %d partitions not reached within %s", topic, len(left), timeout)
		}
		fs.EachError(func(t string, p int32, err error) { k.t.Fatalf("fetching %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := left[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset+1 >= end {
				delete(left, r.Partition)
			}
		})
	}
	return out
}
