package schemas_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// fakeCluster is an in-process cluster of n brokers (kfake) with an admin client.
func fakeCluster(t *testing.T, n int) *kadm.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(n))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	// Metadata cached briefly: the test lists topics right after Ensure listed them as missing.
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// replication returns the fewest replicas of topic's partitions and its min.insync.replicas.
func replication(t *testing.T, adm *kadm.Client, topic string) (int, int) {
	t.Helper()
	ctx := context.Background()
	var td kadm.TopicDetails
	var err error
	// A client that looked for the topic before it was created caches its absence for a while.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		td, err = adm.ListTopics(ctx, topic)
		if err == nil && td[topic].Err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listing %s: %v %v", topic, err, td[topic].Err)
		}
	}
	rf := -1
	for _, p := range td[topic].Partitions {
		if rf < 0 || len(p.Replicas) < rf {
			rf = len(p.Replicas)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if c.Key == "min.insync.replicas" && c.Value != nil {
				n, _ := strconv.Atoi(*c.Value)
				return rf, n
			}
		}
	}
	t.Fatalf("%s: no min.insync.replicas in its config", topic)
	return 0, 0
}

// TestReplicationDefaults: without settings, the topics get min(3, brokers) replicas and min.insync.replicas one
// less (at least 1): one replica on one broker, two on two (min ISR 1), three on five (min ISR 2). Every topic of
// the table is created so, the single-partition ones too.
func TestReplicationDefaults(t *testing.T) {
	for _, tc := range []struct {
		brokers        int
		wantRF, wantIS int
	}{{1, 1, 1}, {2, 2, 1}, {3, 3, 2}, {5, 3, 2}} {
		t.Run(strconv.Itoa(tc.brokers), func(t *testing.T) {
			adm := fakeCluster(t, tc.brokers)
			cfg := schemas.Config{Partitions: 3}
			res, err := cfg.Ensure(t.Context(), adm)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Replication; got != (schemas.Replication{Factor: int16(tc.wantRF), MinInsync: int16(tc.wantIS)}) {
				t.Fatalf("resolved %+v, want factor %d, min insync %d", got, tc.wantRF, tc.wantIS)
			}
			if len(res.Created) != len(cfg.Specs()) || len(res.Shortfalls) != 0 {
				t.Fatalf("created %v, shortfalls %v: want every topic created, none short", res.Created, res.Shortfalls)
			}
			for _, s := range cfg.Specs() {
				if rf, is := replication(t, adm, s.Name); rf != tc.wantRF || is != tc.wantIS {
					t.Errorf("%s: %d replicas, min.insync.replicas %d; want %d, %d", s.Name, rf, is, tc.wantRF, tc.wantIS)
				}
			}
		})
	}
}

// TestReplicationShortfallReported: topics that exist with fewer replicas, or a lower min.insync.replicas, than
// the deployment asks for are left as they are but named in the result (the stages log them at warn); once
// the settings match, nothing is reported.
func TestReplicationShortfallReported(t *testing.T) {
	adm := fakeCluster(t, 3)
	ctx := t.Context()
	cfg := schemas.Config{Partitions: 2, Replication: schemas.Replication{Factor: 1, MinInsync: 1}}
	if _, err := cfg.Ensure(ctx, adm); err != nil {
		t.Fatal(err)
	}
	cfg.Replication = schemas.Replication{} // the defaults on three brokers: 3 and 2
	res, err := cfg.Ensure(ctx, adm)
	if err != nil {
		t.Fatal(err)
	}
	var short []string
	for _, s := range res.Shortfalls {
		short = append(short, s.Topic)
		if s.Factor != 1 || s.WantFactor != 3 || s.MinInsync != 1 || s.WantMinInsync != 2 {
			t.Errorf("shortfall %v, want factor 1 of 3, min insync 1 of 2", s)
		}
	}
	var all []string
	for _, s := range cfg.Specs() {
		all = append(all, s.Name)
		if rf, _ := replication(t, adm, s.Name); rf != 1 {
			t.Errorf("%s: %d replicas after the second Ensure: an existing topic was changed", s.Name, rf)
		}
	}
	slices.Sort(short)
	slices.Sort(all)
	if !slices.Equal(short, all) || len(res.Created) != 0 {
		t.Fatalf("shortfalls %v, created %v; want every topic short, none created", short, res.Created)
	}

	// Only min.insync.replicas below: still reported.
	adm2 := fakeCluster(t, 3)
	cfg.Replication = schemas.Replication{Factor: 3, MinInsync: 1}
	if _, err := cfg.Ensure(ctx, adm2); err != nil {
		t.Fatal(err)
	}
	cfg.Replication = schemas.Replication{}
	if res, err = cfg.Ensure(ctx, adm2); err != nil || len(res.Shortfalls) != len(all) {
		t.Fatalf("min.insync.replicas 1 for 2: shortfalls %v, err %v; want every topic", res.Shortfalls, err)
	}
	// Settings met: silent.
	cfg.Replication = schemas.Replication{Factor: 3, MinInsync: 1}
	if res, err = cfg.Ensure(ctx, adm2); err != nil || len(res.Shortfalls) != 0 {
		t.Fatalf("settings met: shortfalls %v, err %v", res.Shortfalls, err)
	}
}

// TestReplicationInvalid: settings that cannot work are refused before anything is created.
func TestReplicationInvalid(t *testing.T) {
	for _, rep := range []schemas.Replication{{Factor: 2, MinInsync: 3}, {Factor: -2}, {Factor: 1, MinInsync: -5}} {
		adm := fakeCluster(t, 3)
		cfg := schemas.Config{Partitions: 1, Replication: rep}
		res, err := cfg.Ensure(t.Context(), adm)
		if !errors.Is(err, schemas.ErrReplication) {
			t.Errorf("%+v: err %v, want ErrReplication", rep, err)
		}
		if len(res.Created) != 0 {
			t.Errorf("%+v: created %v", rep, res.Created)
		}
	}
}

// TestReplicationOnTheRealBroker: on the local single broker (make up) the defaults give one replica and
// min.insync.replicas 1, so local runs work unchanged.
func TestReplicationOnTheRealBroker(t *testing.T) {
	k := testenv.NewKafka(t, 2)
	cfg := schemas.Config{Prefix: k.Prefix + "auto.", Partitions: 2}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	res, err := cfg.Ensure(ctx, adm)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replication != (schemas.Replication{Factor: 1, MinInsync: 1}) {
		t.Fatalf("resolved %+v on one broker, want 1 and 1", res.Replication)
	}
	for _, s := range cfg.Specs() {
		if rf, is := replication(t, adm, s.Name); rf != 1 || is != 1 {
			t.Errorf("%s: %d replicas, min.insync.replicas %d; want 1, 1", s.Name, rf, is)
		}
	}
	_, _ = adm.DeleteTopics(context.Background(), res.Created...)
}
