package processor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestUnproducibleOutputsAreDeadLetteredOnce, on the real broker: outputs the processor cannot produce used to
// fail every batch that contained them (a crash loop). A raw_event.v1 record of 600 KB (its signal, with the
// derived properties, is 1.2 MB, above the producer's 1 MiB) and a held record that no longer decodes (which
// failed every identify of its visitor) each go to the dead-letter topic once, with the reason; everything else
// flows and the processor keeps running.
func TestUnproducibleOutputsAreDeadLetteredOnce(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	cfg, _ := Config{StateDir: "x", Topics: k.Topics}.withDefaults()
	if _, err := schemas.EnsureTopics(t.Context(), k.Admin, k.Topics.Replication, cfg.internalSpecs()...); err != nil {
		t.Fatal(err)
	}
	h := visitor{schemas.IDKindAnonymous, "h"}
	cl := k.Client()
	if err := cl.ProduceSync(t.Context(),
		&kgo.Record{Topic: k.Topic(TopicChangelog), Partition: 0, Key: counterKey("t", h), Value: heldCounter{First: 0, Next: 2}.encode()},
		&kgo.Record{Topic: k.Topic(TopicChangelog), Partition: 0, Key: heldKey("t", h, 0), Value: []byte{1, 9, 9, 9}},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	big := &schemas.RawEvent{Tenant: "t", KeyID: "k1", ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
		Payload: []byte(fmt.Sprintf(`{"type":"track","anonymousId":"big","event":"Big","messageId":"big1","properties":{"blob":%q}}`,
			strings.Repeat("x", 600_000)))}
	produce(t, k, rawIn{"t", named("track", "good", "", "G1", "")}, rawIn{"t", named("page", "h", "", "H1", "")})
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: k.Topic(schemas.TopicRaw),
		Key: schemas.RoutingKey("t", "big"), Value: encodeV1(t, big)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, k, rawIn{"t", named("track", "good", "", "G2", "")},
		rawIn{"t", `{"type":"identify","anonymousId":"h","messageId":"I1","traits":{"email":"h@x.io"}}`},
		rawIn{"t", `{"type":"identify","anonymousId":"h","messageId":"I2","traits":{"email":"h2@x.io"}}`})
	r := startProcessor(t, k, t.TempDir(), "p", nil)
	// G1, H1 (cold), G2, H1 rehydrated by I1, I1, I2
	got := settle(t, k, 6, 3*time.Second)
	var names []string
	for _, s := range got {
		names = append(names, s.MessageID+"/"+s.Status)
	}
	if want := "G1/cold H1/cold G2/cold H1/linked I1/linked I2/linked"; strings.Join(names, " ") != want {
		t.Fatalf("signals %v, want %s", names, want)
	}
	dlq := k.ReadAll(k.Topic(schemas.TopicDLQ), 2, 10*time.Second)
	time.Sleep(time.Second)
	dlq = k.ReadToEnd(k.Topic(schemas.TopicDLQ), 30*time.Second)
	if len(dlq) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dlq))
	}
	var ds [2]schemas.DeadLetter
	for i := range ds {
		if err := schemas.DeadLetters.Decode(dlq[i].Value, &ds[i]); err != nil {
			t.Fatal(err)
		}
	}
	if d := ds[0]; d.Topic != k.Topic(schemas.TopicRaw) || d.Offset != 2 || !strings.Contains(d.Reason, "exceeds the producer's limit") {
		t.Errorf("dead letter of the big record: %s/%d %q", d.Topic, d.Offset, d.Reason)
	}
	if d := ds[1]; d.Topic != k.Topic(TopicChangelog) || string(d.Key) != string(heldKey("t", h, 0)) ||
		!strings.Contains(d.Reason, "held signal cannot be rehydrated") {
		t.Errorf("dead letter of the held record: %s key %q %q", d.Topic, d.Key, d.Reason)
	}
	if v := counterValue(t, r.reg, "signalstage_processor_dead_letters_total", nil); v != 2 {
		t.Errorf("dead_letters_total = %v, want 2", v)
	}
	r.stop(t)
}

// A dead letter of a record near the size limit would itself be too large to produce (the payload plus the dead
// letter's fields): its payload is cut to fit, and the reason says from how many bytes.
func TestOversizedDeadLetterIsCut(t *testing.T) {
	e := &emitter{}
	payload := []byte(strings.Repeat("y", maxRecordBytes))
	b, ok := e.encodeDeadLetter(&schemas.DeadLetter{Tenant: "t", Stage: "processor", Reason: "too large", Key: []byte("t|k"),
		Payload: payload})
	if !ok || e.err() != nil {
		t.Fatalf("encoding: %v", e.err())
	}
	if n := recordBytes([]byte("t|k"), b); n > maxRecordBytes {
		t.Fatalf("dead letter of %d bytes, limit %d", n, maxRecordBytes)
	}
	var d schemas.DeadLetter
	if err := schemas.DeadLetters.Decode(b, &d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Reason, fmt.Sprintf("payload cut from %d bytes", len(payload))) || len(d.Payload) == 0 {
		t.Fatalf("reason %q, payload %d bytes", d.Reason, len(d.Payload))
	}
}
