package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/signalstage/signalstage/schemas"
)

// webhookLoad posts batches of distinct track events to ingest from a few goroutines until stopped, and keeps
// which events were answered 200 (accepted) and every status seen. It never retries: an event answered anything
// else is not accepted, though it may have reached Kafka (a 503 on a timeout), as it would for Segment.
type webhookLoad struct {
	url      string
	batch    int
	next     atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	accepted map[string]bool
	codes    map[int]int
}

// startWebhookLoad starts workers posting batches of batch events to the pipeline's webhook; the load is stopped
// when the test ends if not before.
func startWebhookLoad(t *testing.T, base string, workers, batch int) *webhookLoad {
	l := &webhookLoad{url: base + "/api/signal-staging/webhook/dev-key", batch: batch, stop: make(chan struct{}),
		accepted: map[string]bool{}, codes: map[int]int{}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if _, err := l.post(); err != nil {
					time.Sleep(100 * time.Millisecond) // ingest unreachable: not an answer, try again
				}
				time.Sleep(50 * time.Millisecond) // a steady load a shared 2-core machine keeps up with

			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// post sends one batch and returns its status.
func (l *webhookLoad) post() (int, error) {
	var body bytes.Buffer
	ids := make([]string, l.batch)
	body.WriteByte('[')
	for i := range ids {
		n := l.next.Add(1)
		ids[i] = "cl-" + strconv.FormatInt(n, 10)
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"type":"track","event":"Cluster Load","anonymousId":"v%d","messageId":"%s","timestamp":"2026-11-30T10:00:00Z"}`,
			n%97, ids[i])
	}
	body.WriteByte(']')
	cl := http.Client{Timeout: 60 * time.Second}
	resp, err := cl.Post(l.url, "application/json", &body)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[resp.StatusCode]++
	if resp.StatusCode == http.StatusOK {
		for _, id := range ids {
			l.accepted[id] = true
		}
	}
	return resp.StatusCode, nil
}

// Stop stops the workers and waits for their last answers.
func (l *webhookLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// Accepted returns how many events were answered 200 so far.
func (l *webhookLoad) Accepted() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.accepted) }

// WaitAccepted waits until n events are accepted.
func (l *webhookLoad) WaitAccepted(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d events accepted (codes so far %v)", n, l.Codes()), func() bool { return l.Accepted() >= n })
}

// Codes returns the count of every status seen.
func (l *webhookLoad) Codes() map[int]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.codes)
}

// checkTopicsReplicated fails the test unless every topic under prefix (the stages' own included) has want
// replicas on every partition and min.insync.replicas minISR.
func checkTopicsReplicated(t *testing.T, c *KafkaCluster, prefix string, want, minISR int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := c.Admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, name := range td.Names() {
		if len(name) > len(prefix) && name[:len(prefix)] == prefix {
			mine = append(mine, name)
			for _, p := range td[name].Partitions {
				if len(p.Replicas) != want {
					t.Errorf("%s/%d: %d replicas, want %d", name, p.Partition, len(p.Replicas), want)
				}
			}
		}
	}
	rcs, err := c.Admin.DescribeTopicConfigs(ctx, mine...)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcs {
		v := "absent"
		if i := slices.IndexFunc(rc.Configs, func(c kadm.Config) bool { return c.Key == "min.insync.replicas" }); i >= 0 {
			v = rc.Configs[i].MaybeValue()
		}
		if rc.Err != nil || v != strconv.Itoa(minISR) {
			t.Errorf("%s: min.insync.replicas %s (%v), want %d", rc.Name, v, rc.Err, minISR)
		}
	}
	t.Logf("%d topics, each with %d replicas and min.insync.replicas %d: %v", len(mine), want, minISR, mine)
}

// TestClusterPipelineLeaderKilled runs the three binaries on the 3-broker cluster with the stages' default
// replication (3 replicas, min.insync.replicas 2, which the test checks on every topic, the processor's
// changelogs too) under a steady webhook load. The broker leading signals.raw partition 0 is SIGKILLed mid-load
// and started again later; then two brokers are SIGKILLed at once and every request answered meanwhile must be a
// 503 (a 200 there would be a write held by one broker only), and once they are back the load is accepted
// again. In the end every event answered 200 is on signals.raw exactly once (the idempotent producer rode the
// failover without writing twice), in signals.resolved read committed with no (signal, version) twice, and in
// ClickHouse exactly once.
func TestClusterPipelineLeaderKilled(t *testing.T) {
	c := NewKafkaCluster(t)
	k := c.Kafka(6)
	ch := NewClickHouse(t)
	p := startPipelineOn(t, k, ch, stageArgs{ingest: []string{"-produce-timeout", "3s"},
		processor: []string{"-admin-addr", freeAddr(t)}})
	t.Cleanup(func() { p.dumpOnFailure(t) })
	raw := k.Topic(schemas.TopicRaw)

	load := startWebhookLoad(t, p.base, 2, 10)
	load.WaitAccepted(t, 1000, 2*time.Minute)
	checkTopicsReplicated(t, c, k.Prefix, 3, 2) // the processor made its topics by now

	leader := c.Leader(raw, 0)
	before := load.Accepted()
	c.Kill(leader)
	killed := time.Now()
	load.WaitAccepted(t, before+1000, 3*time.Minute)
	t.Logf("broker %d (leader of %s/0) SIGKILLed with %d events accepted; %d more accepted in the %s after, codes %v",
		leader, raw, before, load.Accepted()-before, time.Since(killed).Round(time.Millisecond), load.Codes())
	c.Start(leader)
	for _, s := range k.Topics.Specs() {
		c.WaitInSync(s.Name, 2*time.Minute)
	}
	load.WaitAccepted(t, load.Accepted()+500, 2*time.Minute)
	load.Stop()
	t.Logf("broker %d back in every ISR; load stopped with %d events accepted, codes %v", leader, load.Accepted(), load.Codes())

	// Two brokers down: one replica left of each partition, below min.insync.replicas.
	survivor := KafkaClusterBrokerIDs[0]
	for _, id := range KafkaClusterBrokerIDs[1:] {
		c.Kill(id)
	}
	for part := range k.Topics.Partitions {
		c.WaitPartition(raw, part, time.Minute, "ISR of the survivor only", func(d kadm.PartitionDetail) bool {
			return d.Leader == survivor && len(d.ISR) <= 1
		})
	}
	two := &webhookLoad{url: load.url, batch: 20, accepted: map[string]bool{}, codes: map[int]int{}}
	two.next.Store(10_000_000)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				if _, err := two.post(); err != nil {
					t.Errorf("posting with two brokers down: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	codes := two.Codes()
	if codes[http.StatusOK] > 0 || codes[http.StatusServiceUnavailable] != 8 {
		t.Fatalf("with two of three brokers down: answers %v, want 8 × 503 and no 200", codes)
	}
	t.Logf("with two brokers down: answers %v", codes)
	for _, id := range KafkaClusterBrokerIDs[1:] {
		c.Start(id)
	}
	for _, s := range k.Topics.Specs() {
		c.WaitInSync(s.Name, 2*time.Minute)
	}
	waitFor(t, 2*time.Minute, "a 200 once the brokers are back", func() bool {
		code, err := load.post()
		return err == nil && code == http.StatusOK
	})

	checkAcceptedExactlyOnce(t, k, ch, load.accepted)
}

// dumpOnFailure logs the lag of the pipeline's groups and has the processor print its goroutines (SIGQUIT) if
// the test failed: where a stalled pipeline waits.
func (p *pipeline) dumpOnFailure(t *testing.T) {
	if !t.Failed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, g := range []string{p.k.Prefix + "processor", p.k.Prefix + "sink"} {
		lags, err := p.k.Admin.Lag(ctx, g)
		if err != nil {
			t.Logf("lag of %s: %v", g, err)
			continue
		}
		for _, l := range lags {
			t.Logf("group %s: state %s, members %d, lag %v", g, l.State, len(l.Members), l.Lag.TotalByTopic())
		}
	}
	if s := p.stages["processor"]; s != nil {
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
	}
}

// checkAcceptedExactlyOnce waits until every accepted message id is in ClickHouse, then checks it is there once,
// on signals.raw once, and that signals.resolved (read committed) holds no (signal id, version) twice.
func checkAcceptedExactlyOnce(t *testing.T, k *Kafka, ch *ClickHouse, accepted map[string]bool) {
	t.Helper()
	inCH := map[string]uint64{}
	waitFor(t, 5*time.Minute, fmt.Sprintf("%d accepted events in ClickHouse", len(accepted)), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rows, err := ch.Conn.Query(ctx, "SELECT message_id, count() FROM signals FINAL GROUP BY message_id")
		if err != nil {
			t.Logf("querying signals: %v", err)
			return false
		}
		defer rows.Close()
		clear(inCH)
		for rows.Next() {
			var id string
			var n uint64
			if err := rows.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			inCH[id] = n
		}
		missing := 0
		for id := range accepted {
			if inCH[id] == 0 {
				missing++
			}
		}
		if missing > 0 && time.Now().Second()%15 == 0 {
			t.Logf("%d of %d accepted events not in ClickHouse yet", missing, len(accepted))
		}
		return missing == 0
	})
	for id, n := range inCH {
		if n != 1 {
			t.Errorf("message %s: %d rows in signals FINAL, want 1", id, n)
		}
	}

	onRaw := map[string]int{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicRaw), 2*time.Minute) {
		var ev schemas.RawEvent
		if err := schemas.DecodeRawEvent(r.Value, &ev); err != nil {
			t.Fatalf("decoding raw %d/%d: %v", r.Partition, r.Offset, err)
		}
		onRaw[ev.MessageID]++
	}
	for id := range accepted {
		if onRaw[id] != 1 {
			t.Errorf("accepted message %s is %d times on signals.raw, want once", id, onRaw[id])
		}
	}
	versions := map[string]int{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicResolved), 2*time.Minute) {
		var s schemas.Signal
		if err := schemas.Signals.Decode(r.Value, &s); err != nil {
			t.Fatalf("decoding resolved %d/%d: %v", r.Partition, r.Offset, err)
		}
		key := fmt.Sprintf("%s/%d", s.SignalID, s.Version)
		if versions[key]++; versions[key] == 2 {
			t.Errorf("signal %s (message %s) version %d twice on signals.resolved", s.SignalID, s.MessageID, s.Version)
		}
	}
	t.Logf("%d accepted events: each once on signals.raw and in ClickHouse (%d message ids there, %d on raw); %d (signal, version) on signals.resolved, none twice",
		len(accepted), len(inCH), len(onRaw), len(versions))
}
