package processor

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestPassThroughAndDeadLetter: events come out as signals with their content-hash id and derived fields, and a
// poison record goes to the DLQ without stopping its partition.
func TestPassThroughAndDeadLetter(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	page := `{"type":"page","anonymousId":"a1","messageId":"p1","properties":{"url":"https://x.io/pricing?q=1","title":"P"},"sentAt":"2024-01-01T00:00:00Z","timestamp":"2024-01-01T00:00:01Z"}`
	produce(t, k,
		rawIn{"t1", `{"type":"track","anonymousId":"a1","event":"Signed Up","messageId":"m1","properties":{"plan":"pro","n":1.50}}`},
		rawIn{"t1", page},
		rawIn{"t1", `{"type":"identify","anonymousId":"a2","messageId":"i1","traits":{"name":"Ann"}}`},
		rawIn{"t1", `{"order":42,"status":"paid"}`},
	)
	// What no edge writes: a raw_event.v1 record (a producer of its own) whose payload is not JSON.
	produceV1(t, k, rawIn{"t1", `not json`})
	// A record that is not even a RawEvent, sent for the second time by a redrive.
	cl := k.Client()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: []byte("t1|a1"),
		Value: []byte("garbage"), Headers: []kgo.RecordHeader{{Key: schemas.RedriveHeader, Value: []byte("2")}}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, k, rawIn{"t1", `{"type":"track","anonymousId":"a1","event":"After Poison","messageId":"m9"}`})

	r := startProcessor(t, k, t.TempDir(), "p1", nil)
	got := settle(t, k, 5, 3*time.Second)
	if len(got) != 5 {
		t.Fatalf("got %d signals, want 5: %+v", len(got), got)
	}
	byEvent := map[string]schemas.Signal{}
	for _, s := range got {
		byEvent[s.Event] = s
		if len(s.SignalID) != 64 || versionCount(s.Version) != 1 || s.Status != schemas.StatusCold || s.Tenant != "t1" {
			t.Errorf("signal %+v: want 64-hex id, version 1, cold, tenant t1", s)
		}
	}
	for _, tc := range []struct{ event, typ, source, anon, url string }{
		{"Signed Up", "track", schemas.SourceSegment, "a1", ""},
		{"/pricing", "page", schemas.SourceSegment, "a1", "https://x.io/pricing?q=1"},
		{"identify", "identify", schemas.SourceSegment, "a2", ""},
		{"webhook", "webhook", schemas.SourceWebhook, "", ""},
		{"After Poison", "track", schemas.SourceSegment, "a1", ""},
	} {
		s, ok := byEvent[tc.event]
		if !ok {
			t.Errorf("no signal with event %q", tc.event)
			continue
		}
		if s.Type != tc.typ || s.Source != tc.source || s.AnonymousID != tc.anon || s.URL != tc.url {
			t.Errorf("signal %q = type %q source %q anon %q url %q; want %+v", tc.event, s.Type, s.Source, s.AnonymousID, s.URL, tc)
		}
	}
	if s := byEvent["Signed Up"]; s.Properties != `{"n":1.5,"plan":"pro"}` {
		t.Errorf("properties = %s, want the canonical form (RFC 8785)", s.Properties)
	}
	// Sent straight by a client (sentAt, no receivedAt): Segment's clock-skew correction, received - (sentAt -
	// timestamp), one second after it was received.
	if s := byEvent["/pricing"]; !s.EventTime.Equal(s.ReceivedAt.Add(time.Second)) {
		t.Errorf("event time = %v, received %v", s.EventTime, s.ReceivedAt)
	}

	dlq := k.ReadAll(k.Topic(schemas.TopicDLQ), 2, 10*time.Second)
	if len(dlq) != 2 {
		t.Fatalf("got %d dead letters, want 2", len(dlq))
	}
	for _, rec := range dlq {
		var d schemas.DeadLetter
		if err := schemas.DeadLetters.Decode(rec.Value, &d); err != nil {
			t.Fatal(err)
		}
		if d.Stage != "processor" || d.Topic != k.Topic(schemas.TopicRaw) || d.Offset < 0 || d.Reason == "" {
			t.Errorf("dead letter %+v", d)
		}
		want := int32(0)
		if string(d.Payload) == "garbage" {
			want = 2
		}
		if d.Retries != want {
			t.Errorf("dead letter of %q: retries %d, want %d (the record's redrive count)", d.Payload, d.Retries, want)
		}
	}
	r.stop(t)
}

// TestUnprocessableRecordIsDeadLettered: a record whose processing fails half-way (here: the state it needs is
// corrupt) is dead-lettered with its reason, leaves no output, and the partition goes on.
func TestUnprocessableRecordIsDeadLettered(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	cfg, _ := Config{StateDir: "x", Topics: k.Topics}.withDefaults()
	if _, err := schemas.EnsureTopics(t.Context(), k.Admin, k.Topics.Replication, cfg.internalSpecs()...); err != nil {
		t.Fatal(err)
	}
	// A corrupt identity for visitor "bad" in the changelog: every event of "bad" needs to read it.
	cl := k.Client()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: k.Topic(TopicChangelog), Partition: 0,
		Key: identityKey("t", visitor{schemas.IDKindAnonymous, "bad"}), Value: []byte{9, 9, 9}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, k,
		rawIn{"t", named("track", "good", "", "G1", "")},
		rawIn{"t", named("track", "bad", "", "B1", "")},
		rawIn{"t", named("track", "good", "", "G2", "")},
	)
	r := startProcessor(t, k, t.TempDir(), "p", nil)
	got := settle(t, k, 2, 2*time.Second)
	if len(got) != 2 || got[0].MessageID != "G1" || got[1].MessageID != "G2" {
		t.Fatalf("signals %v, want G1 and G2 only", events(got))
	}
	dlq := k.ReadAll(k.Topic(schemas.TopicDLQ), 1, 10*time.Second)
	if len(dlq) != 1 {
		t.Fatalf("got %d dead letters, want 1", len(dlq))
	}
	var d schemas.DeadLetter
	if err := schemas.DeadLetters.Decode(dlq[0].Value, &d); err != nil {
		t.Fatal(err)
	}
	if d.Offset != 1 || d.Tenant != "t" || !strings.Contains(d.Reason, "corrupt state value") {
		t.Errorf("dead letter %+v", d)
	}
	r.stop(t)
}
