package schemas

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestViewRecord: records of every decodable topic, in the newest and an older schema version, view with their
// Avro field names, payloads as JSON, times in RFC 3339; a tombstone views as null; other topics are refused.
func TestViewRecord(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	sig, err := Signals.Encode(&Signal{Tenant: "acme", SignalID: "s1", Version: 3, Event: "Demo Requested",
		ReceivedAt: at, Payload: []byte(`{"type":"track","event":"Demo Requested"}`)})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := avscFS.ReadFile("avsc/raw_event.v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	old, err := NewCodec[RawEvent]("raw_event", string(v1))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := old.Encode(&RawEvent{Tenant: "acme", KeyID: "k1", ReceivedAt: at, Payload: []byte(`{"messageId":"m1"}`)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topic string
		value []byte
		want  map[string]any
	}{
		{TopicResolved, sig, map[string]any{"tenant": "acme", "signal_id": "s1", "version": 3.0, "event": "Demo Requested",
			"received_at": "2026-11-30T10:00:00Z", "payload": map[string]any{"type": "track", "event": "Demo Requested"}}},
		{TopicRaw, raw, map[string]any{"tenant": "acme", "key_id": "k1", "payload": map[string]any{"messageId": "m1"},
			"contract": 0.0, "message_id": ""}},
	} {
		v, err := ViewRecord(tc.topic, tc.value)
		if err != nil {
			t.Fatalf("%s: %v", tc.topic, err)
		}
		b, _ := json.Marshal(v)
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for k, want := range tc.want {
			if g, _ := json.Marshal(got[k]); string(g) != mustJSON(want) {
				t.Errorf("%s: %s = %s, want %s (record %s)", tc.topic, k, g, mustJSON(want), b)
			}
		}
	}
	if v, err := ViewRecord(TopicRules, nil); err != nil || v != nil {
		t.Fatalf("tombstone: %v, %v", v, err)
	}
	if _, err := ViewRecord("processor.changelog", []byte{1}); !errors.Is(err, ErrNoView) {
		t.Fatalf("internal topic: %v, want ErrNoView", err)
	}
	if _, err := ViewRecord(TopicResolved, []byte("not avro")); !errors.Is(err, ErrNotSingleObject) {
		t.Fatalf("garbage: %v, want ErrNotSingleObject", err)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
