// Command kafkaready waits until a Kafka cluster answers a real metadata
// request that lists at least one live broker and a controller, and (unless
// -coordinators=false) until it names a group and a transaction coordinator.
// The coordinator lookups make the broker create __consumer_offsets and
// __transaction_state on first start, so the first test that commits offsets
// or a transaction does not pay for that.
//
// With -node-id N it also waits until broker N itself is in the metadata's
// broker list, that is registered with the controller and unfenced: in a
// cluster the other brokers answer metadata requests while a restarted one is
// still catching up. With -controller it asks a KRaft controller (its
// CONTROLLER listener) for the metadata quorum instead, and waits until the
// quorum has a leader and, with -node-id, lists that controller as a voter.
//
// testenv/services.sh builds it once into the cache directory and uses it as
// the Kafka readiness probe: an open TCP port alone does not mean the broker
// serves requests (a KRaft broker accepts connections before it is unfenced).
//
// Usage:
//
//	kafkaready [-brokers 127.0.0.1:9092] [-timeout 60s] [-attempt 3s] [-coordinators=true] [-node-id N] [-controller] [-q]
//
// It exits 0 as soon as the cluster is ready and 1 when -timeout passes first,
// printing the last error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	defBrokers := os.Getenv("SIGNALSTAGE_KAFKA_BROKERS")
	if defBrokers == "" {
		defBrokers = "127.0.0.1:9092"
	}
	brokers := flag.String("brokers", defBrokers, "comma-separated seed brokers (default $SIGNALSTAGE_KAFKA_BROKERS or 127.0.0.1:9092)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	attempt := flag.Duration("attempt", 3*time.Second, "timeout of one metadata request")
	coords := flag.Bool("coordinators", true, "also wait for a group and a transaction coordinator")
	nodeID := flag.Int("node-id", -1, "also wait until this broker (or with -controller, this voter) is live")
	controller := flag.Bool("controller", false, "-brokers is a KRaft controller listener: wait for a quorum leader")
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	seeds := strings.Split(*brokers, ",")
	if *controller {
		leader, err := waitQuorum(ctx, seeds, *attempt, int32(*nodeID))
		if err != nil {
			fmt.Fprintf(os.Stderr, "kafkaready: controller %s not ready after %s: %v\n", *brokers, *timeout, err)
			os.Exit(1)
		}
		if !*quiet {
			fmt.Printf("kafkaready: controller %s ready, quorum leader %d\n", *brokers, leader)
		}
		return
	}
	md, err := waitReady(ctx, seeds, *attempt, *coords, int32(*nodeID))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %s not ready after %s: %v\n", *brokers, *timeout, err)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("kafkaready: cluster %s ready: %d broker(s), controller %d\n", md.Cluster, len(md.Brokers), md.Controller)
	}
}

func newClient(seeds []string) (*kgo.Client, error) {
	return kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 200 * time.Millisecond }),
	)
}

// retry calls try with a per-attempt timeout until it returns nil or ctx ends, returning the last error.
func retry(ctx context.Context, attempt time.Duration, try func(context.Context) error) error {
	lastErr := errors.New("no attempt made")
	for {
		actx, acancel := context.WithTimeout(ctx, attempt)
		lastErr = try(actx)
		acancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitReady retries a broker metadata request (and, with coords, coordinator
// lookups) until it lists a broker (node, if non-negative) and a controller, or ctx ends.
func waitReady(ctx context.Context, seeds []string, attempt time.Duration, coords bool, node int32) (kadm.Metadata, error) {
	cl, err := newClient(seeds)
	if err != nil {
		return kadm.Metadata{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var md kadm.Metadata
	err = retry(ctx, attempt, func(ctx context.Context) error {
		var err error
		md, err = adm.BrokerMetadata(ctx)
		switch {
		case err != nil:
			return err
		case len(md.Brokers) == 0:
			return errors.New("metadata lists no brokers")
		case md.Controller < 0:
			return errors.New("metadata lists no controller")
		case node >= 0 && !hasBroker(md, node):
			return fmt.Errorf("broker %d is not live yet (metadata lists %v)", node, md.Brokers.NodeIDs())
		case coords:
			return coordinatorsReady(ctx, adm)
		}
		return nil
	})
	return md, err
}

func hasBroker(md kadm.Metadata, node int32) bool {
	for _, b := range md.Brokers {
		if b.NodeID == node {
			return true
		}
	}
	return false
}

// coordinatorsReady returns nil once the cluster names a group coordinator and
// a transaction coordinator; the first lookup creates the internal topics.
func coordinatorsReady(ctx context.Context, adm *kadm.Client) error {
	const key = "signalstage-kafkaready"
	if r := adm.FindGroupCoordinators(ctx, key)[key]; r.Err != nil {
		return fmt.Errorf("group coordinator: %w", r.Err)
	}
	if r := adm.FindTxnCoordinators(ctx, key)[key]; r.Err != nil {
		return fmt.Errorf("transaction coordinator: %w", r.Err)
	}
	return nil
}

// waitQuorum sends DescribeQuorum straight to each controller in seeds (a controller serves no metadata requests,
// so the request cannot be routed the usual way; only the quorum leader answers it) until the leader reports a
// metadata quorum with a leader and, if voter is non-negative, that voter is the leader or has caught up with the
// leader's log within the last few seconds. It returns the leader's id.
func waitQuorum(ctx context.Context, seeds []string, attempt time.Duration, voter int32) (int32, error) {
	cl, err := newClient(seeds)
	if err != nil {
		return -1, err
	}
	defer cl.Close()
	var leader int32 = -1
	err = retry(ctx, attempt, func(ctx context.Context) error {
		var errs []error
		for _, b := range cl.SeedBrokers() {
			p, err := describeQuorum(ctx, b)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := voterCaughtUp(p, voter); err != nil {
				return err
			}
			leader = p.LeaderID
			return nil
		}
		return errors.Join(errs...)
	})
	return leader, err
}

func describeQuorum(ctx context.Context, b *kgo.Broker) (kmsg.DescribeQuorumResponseTopicPartition, error) {
	var none kmsg.DescribeQuorumResponseTopicPartition
	req := kmsg.NewPtrDescribeQuorumRequest()
	topic := kmsg.NewDescribeQuorumRequestTopic()
	topic.Topic = "__cluster_metadata"
	topic.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = append(req.Topics, topic)
	resp, err := req.RequestWith(ctx, b)
	if err != nil {
		return none, err
	}
	if err := errorCode(resp.ErrorCode, resp.ErrorMessage); err != nil {
		return none, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return none, errors.New("describe quorum: no metadata partition in the response")
	}
	p := resp.Topics[0].Partitions[0]
	if err := errorCode(p.ErrorCode, p.ErrorMessage); err != nil {
		return none, err
	}
	if p.LeaderID < 0 {
		return none, errors.New("the metadata quorum has no leader yet")
	}
	return p, nil
}

// voterCaughtUp returns nil if voter is negative, is the leader, or is a voter that caught up with the leader's
// log in the last 5 seconds (a controller just restarted has not).
func voterCaughtUp(p kmsg.DescribeQuorumResponseTopicPartition, voter int32) error {
	if voter < 0 || voter == p.LeaderID {
		return nil
	}
	for _, v := range p.CurrentVoters {
		if v.ReplicaID != voter {
			continue
		}
		if v.LastCaughtUpTimestamp < 0 || time.Since(time.UnixMilli(v.LastCaughtUpTimestamp)) > 5*time.Second {
			return fmt.Errorf("controller %d has not caught up with leader %d", voter, p.LeaderID)
		}
		return nil
	}
	return fmt.Errorf("controller %d is not a voter of the quorum", voter)
}

// errorCode turns a response's error code (and message, if any) into an error, nil for 0.
func errorCode(code int16, msg *string) error {
	err := kerr.ErrorForCode(code)
	if err != nil && msg != nil && *msg != "" {
		err = fmt.Errorf("%w: %s", err, *msg)
	}
	return err
}
