package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestRedriveProgress: `sink redrive` against the real broker and ClickHouse, stderr not a terminal, logs
// "redrive progress" lines whose counts only grow towards the number of dead letters selected, and a finished one
// with all of them done; the dead letters reach their origin topic.
func TestRedriveProgress(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	k := testenv.NewKafka(t, 1)
	db := []string{"-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database, "-brokers", strings.Join(k.Brokers, ","),
		"-topic-prefix", k.Prefix, "-partitions", "1"}
	if code := run(append([]string{"migrate", "-log-level", "error"}, db...)); code != 0 {
		t.Fatalf("migrate: exit %d", code)
	}
	const n = 1200 // more than one chunk of 500
	b, err := ch.Conn.PrepareBatch(context.Background(), "INSERT INTO dead_letters_v2 (tenant, stage, reason, origin_topic, "+
		"origin_partition, origin_offset, key, payload, failed_at, kafka_topic, kafka_partition, kafka_offset)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := b.Append("acme", "processor", "corrupt state value", k.Topic(schemas.TopicRaw), int32(0), int64(i),
			"acme|a1", "payload", time.Now(), k.Topic(schemas.TopicDLQ), int32(0), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	stderr := captureStderr(t, func() {
		_ = captureStdout(t, func() {
			if code := run(append([]string{"redrive", "-progress", "1ms"}, db...)); code != 0 {
				t.Errorf("redrive: exit %d", code)
			}
		})
	})
	var lines []map[string]any
	for _, l := range strings.Split(stderr, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "redrive progress" {
			lines = append(lines, v)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("no progress lines on stderr:\n%s", stderr)
	}
	prev := -1.0
	for _, l := range lines {
		done, total := l["done"].(float64), l["total"].(float64)
		if total != n || done < prev || done > total {
			t.Errorf("progress line %v: want total %d and done growing up to it", l, n)
		}
		prev = done
	}
	last := lines[len(lines)-1]
	if last["finished"] != true || last["done"].(float64) != n || last["percent"] != "100.0" || last["rate_per_s"] == "0.0" {
		t.Errorf("last progress line %v, want finished with %d done", last, n)
	}
	t.Logf("%d progress lines, last %v", len(lines), last)
	if got := k.ReadAll(k.Topic(schemas.TopicRaw), n, 30*time.Second); len(got) != n {
		t.Errorf("signals.raw has %d records, want %d redriven", len(got), n)
	}
}

func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	f()
	os.Stderr = old
	_ = w.Close()
	return <-done
}
