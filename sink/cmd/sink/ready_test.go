package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// TestReadyzAndPartitionLag runs the sink against the real Kafka and ClickHouse: /readyz answers 503 before
// the sink is loading and in its group, then 200; /metrics has the per-partition lag of every topic it reads.
func TestReadyzAndPartitionLag(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	ch := testenv.NewClickHouse(t)
	cfg := sink.Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: ch.Addr, Database: ch.Database,
		ClickHouseUser: "default", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	get := startServe(t, cfg)
	waitReady(t, get)
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, body = get("/metrics")
		if strings.Contains(body, `signalstage_sink_partition_lag_records{partition="2",topic="signals.resolved"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no per-partition lag of signals.resolved in /metrics")
		}
	}
}

// startServe runs the sink's run verb in-process with cfg and its metrics listener on a free port, stopped (and
// checked to have stopped cleanly) when the test ends; get fetches a path of that listener.
func startServe(t *testing.T, cfg sink.Config) (get func(path string) (int, string)) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg.Logger, cfg, addr, addConsoleFlags(flag.NewFlagSet("sink", flag.ContinueOnError)))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// waitReady waits up to a minute for /readyz to answer 200.
func waitReady(t *testing.T, get func(path string) (int, string)) {
	t.Helper()
	var code int
	var body string
	seen503 := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = get("/readyz"); code == http.StatusOK {
			break
		}
		seen503 = seen503 || code == http.StatusServiceUnavailable
	}
	if code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if !seen503 {
		t.Log("the sink was ready before the first probe (no 503 seen)")
	}
}

// TestStaticMembership: with -instance-id the sink joins its group as a static member under that id (what lets a
// restarted sink take its partitions back at once instead of waiting out its predecessor's session), and the
// group keeps the membership across a restart of the sink.
func TestStaticMembership(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	ch := testenv.NewClickHouse(t)
	cfg := sink.Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: ch.Addr, Database: ch.Database,
		ClickHouseUser: "default", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		InstanceID: "sink-static-test", SessionTimeout: 20 * time.Second}
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	members := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		groups, err := adm.DescribeGroups(ctx, sink.Group(cfg.Topics.Prefix))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, g := range groups {
			for _, m := range g.Members {
				id := "(dynamic)"
				if m.InstanceID != nil {
					id = *m.InstanceID
				}
				ids = append(ids, id)
			}
		}
		return ids
	}
	for run := 1; run <= 2; run++ {
		t.Run(fmt.Sprint("run ", run), func(t *testing.T) {
			get := startServe(t, cfg)
			waitReady(t, get)
			if got := members(); len(got) != 1 || got[0] != cfg.InstanceID {
				t.Fatalf("group members %v, want one static member %q", got, cfg.InstanceID)
			}
		})
	}
}
