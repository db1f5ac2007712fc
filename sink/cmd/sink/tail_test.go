package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestTailVerb: `sink tail -from-beginning -n N` against the real broker prints the records of signals.resolved
// and signals.rules as JSON lines: decoded with their Avro field names and payload JSON, key, headers, where they
// are; a record that does not decode is printed with its error; a tombstone prints a null value. An unknown or
// internal topic is a usage error (exit 2).
func TestTailVerb(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sig, err := schemas.Signals.Encode(&schemas.Signal{Tenant: "acme", SignalID: "s-tail", Version: 2, Event: "Demo Requested",
		Payload: []byte(`{"type":"track","event":"Demo Requested"}`)})
	if err != nil {
		t.Fatal(err)
	}
	resolved, rulesTopic := k.Topic(schemas.TopicResolved), k.Topic(schemas.TopicRules)
	cl := k.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: resolved, Key: []byte("acme|anon-1"), Value: sig, Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}},
		&kgo.Record{Topic: resolved, Key: []byte("acme|anon-1"), Value: []byte("not avro")},
		&kgo.Record{Topic: rulesTopic, Key: []byte("acme|rule-1"), Value: nil},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-log-level", "error"}
	tail := func(topic string, n string) []map[string]any {
		t.Helper()
		out := captureStdout(t, func() {
			if code := run(append(append([]string{"tail"}, common...), "-topic", topic, "-from-beginning", "-n", n)); code != 0 {
				t.Errorf("tail %s: exit %d", topic, code)
			}
		})
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("tail %s: line %q is not JSON: %v", topic, l, err)
			}
			lines = append(lines, m)
		}
		return lines
	}
	lines := tail(schemas.TopicResolved, "2")
	if len(lines) != 2 {
		t.Fatalf("tail -n 2 printed %d lines", len(lines))
	}
	first, _ := json.Marshal(lines[0])
	for _, want := range []string{`"signal_id":"s-tail"`, `"version":2`, `"payload":{"event":"Demo Requested","type":"track"}`,
		`"key":"acme|anon-1"`, `"headers":{"h":"v"}`, `"offset":0`, `"topic":"` + resolved + `"`} {
		if !strings.Contains(string(first), want) {
			t.Errorf("first line %s lacks %s", first, want)
		}
	}
	if e, _ := lines[1]["error"].(string); !strings.Contains(e, "not an avro single-object") {
		t.Errorf("undecodable record: error %q, want the decoder's", e)
	}
	// The full name works too; a tombstone is a null value.
	lines = tail(rulesTopic, "1")
	if v, ok := lines[0]["value"]; !ok || v != nil || lines[0]["key"] != "acme|rule-1" {
		t.Errorf("tombstone line = %v", lines[0])
	}
	for _, topic := range []string{"processor.changelog", "no.such.topic"} {
		if code := run(append(append([]string{"tail"}, common...), "-topic", topic, "-n", "1")); code != 2 {
			t.Errorf("tail %s: exit %d, want 2", topic, code)
		}
	}
}
