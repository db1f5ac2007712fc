// Command kafkaready waits until a Kafka cluster answers a real metadata
// request that lists at least one live broker and a controller, and (unless
// -coordinators=false) until it names a group and a transaction coordinator.
// The coordinator lookups make the broker create __consumer_offsets and
// __transaction_state on first start, so the first test that commits offsets
// or a transaction does not pay for that.
//
// testenv/services.sh builds it once into the cache directory and uses it as
// the Kafka readiness probe: an open TCP port alone does not mean the broker
// serves requests (a KRaft broker accepts connections before it is unfenced).
//
// Usage:
//
//	kafkaready [-brokers 127.0.0.1:9092] [-timeout 60s] [-attempt 3s] [-coordinators=true] [-q]
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
	"github.com/twmb/franz-go/pkg/kgo"
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
	quiet := flag.Bool("q", false, "print nothing on success")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	md, err := waitReady(ctx, strings.Split(*brokers, ","), *attempt, *coords)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kafkaready: %s not ready after %s: %v\n", *brokers, *timeout, err)
		os.Exit(1)
	}
	if !*quiet {
		fmt.Printf("kafkaready: cluster %s ready: %d broker(s), controller %d\n", md.Cluster, len(md.Brokers), md.Controller)
	}
}

// waitReady retries a broker metadata request (and, with coords, coordinator
// lookups) until it lists a broker and a controller, or ctx ends.
func waitReady(ctx context.Context, seeds []string, attempt time.Duration, coords bool) (kadm.Metadata, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.DialTimeout(time.Second),
		kgo.RetryBackoffFn(func(int) time.Duration { return 200 * time.Millisecond }),
	)
	if err != nil {
		return kadm.Metadata{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	lastErr := errors.New("no attempt made")
	for {
		actx, acancel := context.WithTimeout(ctx, attempt)
		md, err := adm.BrokerMetadata(actx)
		switch {
		case err != nil:
			lastErr = err
		case len(md.Brokers) == 0:
			lastErr = errors.New("metadata lists no brokers")
		case md.Controller < 0:
			lastErr = errors.New("metadata lists no controller")
		case coords:
			lastErr = coordinatorsReady(actx, adm)
		default:
			lastErr = nil
		}
		acancel()
		if lastErr == nil {
			return md, nil
		}
		select {
		case <-ctx.Done():
			return kadm.Metadata{}, lastErr
		case <-time.After(250 * time.Millisecond):
		}
	}
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
