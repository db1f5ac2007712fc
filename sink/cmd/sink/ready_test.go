package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// TestReadyzAndPartitionLag runs the sink against the real Kafka and ClickHouse: /readyz answers 503 before
// the sink is loading and in its group, then 200; /metrics has the per-partition lag of every topic it reads.
func TestReadyzAndPartitionLag(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	ch := testenv.NewClickHouse(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := sink.Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: ch.Addr, Database: ch.Database,
		ClickHouseUser: "default", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg.Logger, cfg, addr, addConsoleFlags(flag.NewFlagSet("sink", flag.ContinueOnError)))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
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
