package schemas_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// registryTopic returns a topic name of the test's own, so its subject is new in the shared registry.
func registryTopic(t *testing.T, base string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "t_" + strings.ToLower(t.Name()) + "_" + hex.EncodeToString(b[:]) + "." + base
}

func openRegistry(t *testing.T) (*schemas.Registry, *sr.Client) {
	t.Helper()
	url := testenv.NewSchemaRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := schemas.NewRegistry(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

// TestRegistryWireFormat: against the real registry, a writer registers signal.v2 under <topic>-value and
// frames records as magic 0 + the registry's id + the same Avro body the single-object encoding carries; a
// reader with a cold cache (another process) looks the id up and decodes the record, as it does a single-object
// one, through the codec, the hand-written raw-event decoder and ViewRecord.
func TestRegistryWireFormat(t *testing.T) {
	writer, cl := openRegistry(t)
	ctx := context.Background()
	topic := registryTopic(t, schemas.TopicResolved)
	if err := writer.Register(ctx, topic, schemas.Signals); err != nil {
		t.Fatal(err)
	}
	latest, err := cl.SchemaByVersion(ctx, schemas.Subject(topic), -1)
	if err != nil {
		t.Fatalf("subject %s after Register: %v", schemas.Subject(topic), err)
	}

	sig := &schemas.Signal{Tenant: "acme", SignalID: "s1", Version: 3, Event: "Demo Requested",
		ReceivedAt: time.UnixMilli(1764590000000).UTC(), Payload: []byte(`{"type":"track"}`)}
	single, err := schemas.EncodeSignal(sig)
	if err != nil {
		t.Fatal(err)
	}
	framed, err := schemas.EncodeSignalWith(writer, sig)
	if err != nil {
		t.Fatal(err)
	}
	if framed[0] != 0 || int(binary.BigEndian.Uint32(framed[1:5])) != latest.ID {
		t.Fatalf("header % x, want 00 and id %d", framed[:5], latest.ID)
	}
	if !bytes.Equal(framed[5:], single[10:]) {
		t.Fatal("registry-framed body differs from the single-object body")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = schemas.EncodeSignalWith(writer, sig) }); n != 1 {
		t.Fatalf("EncodeSignalWith(registry): %v allocations, want 1", n)
	}
	reflective, err := schemas.Signals.EncodeWith(writer, sig)
	if err != nil || !bytes.Equal(reflective[:5], framed[:5]) {
		t.Fatalf("Signals.EncodeWith: % x, %v; want the header % x", reflective[:5], err, framed[:5])
	}

	reader, _ := openRegistry(t) // a cache of its own: the id must come from the server
	for name, b := range map[string][]byte{"single-object": single, "registry": framed} {
		var got schemas.Signal
		if err := schemas.Signals.DecodeWith(reader, b, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.SignalID != "s1" || got.Version != 3 || got.Event != "Demo Requested" {
			t.Fatalf("%s: decoded %+v", name, got)
		}
		v, err := schemas.ViewRecordWith(reader, schemas.TopicResolved, b)
		if err != nil {
			t.Fatalf("%s: ViewRecordWith: %v", name, err)
		}
		j, _ := json.Marshal(v)
		if !strings.Contains(string(j), `"signal_id":"s1"`) {
			t.Fatalf("%s: view %s", name, j)
		}
	}

	// Raw events: the edge's hand-written encoder and the processor's hand-written decoder, in both formats.
	rawTopic := registryTopic(t, schemas.TopicRaw)
	if err := writer.Register(ctx, rawTopic, schemas.RawEvents); err != nil {
		t.Fatal(err)
	}
	hdr, err := writer.Header(schemas.RawEvents)
	if err != nil {
		t.Fatal(err)
	}
	ev := &schemas.RawEvent{Tenant: "acme", KeyID: "k1", Source: "segment", ReceivedAt: time.UnixMilli(1764590000000).UTC(),
		Payload: []byte(`{"type":"track","event":"Signed Up"}`)}
	ev.Event = "Signed Up"
	for name, b := range map[string][]byte{
		"single-object": schemas.AppendRawEvent(nil, ev),
		"registry":      schemas.AppendRawEventFramed(nil, hdr, ev),
	} {
		var got schemas.RawEvent
		if err := schemas.DecodeRawEventWith(reader, b, &got); err != nil {
			t.Fatalf("raw %s: %v", name, err)
		}
		if got.Tenant != "acme" || got.Event != "Signed Up" || string(got.Payload) != string(ev.Payload) {
			t.Fatalf("raw %s: decoded %+v", name, got)
		}
	}
}

// TestRegistryOlderAndUnknownWriters: a record framed with the id of raw_event.v1 (an older version, registered
// by an older writer) decodes into the current type; so does one written with a schema this binary has never
// seen (signal.v2 plus a field with a default), resolved against the reader's schema.
func TestRegistryOlderAndUnknownWriters(t *testing.T) {
	reg, cl := openRegistry(t)
	ctx := context.Background()
	v1, err := os.ReadFile("avsc/raw_event.v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := cl.CreateSchema(ctx, schemas.Subject(registryTopic(t, schemas.TopicRaw)), sr.Schema{Schema: string(v1)})
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(avro.MustParse(string(v1)), map[string]any{"tenant": "acme", "key_id": "k", "source": "segment",
		"received_at": time.UnixMilli(1764590000000).UTC(), "request_id": "r1", "payload": []byte(`{"type":"page"}`)})
	if err != nil {
		t.Fatal(err)
	}
	var ev schemas.RawEvent
	if err := schemas.DecodeRawEventWith(reg, frame(ss.ID, body), &ev); err != nil {
		t.Fatalf("v1 record: %v", err)
	}
	if ev.Tenant != "acme" || ev.RequestID != "r1" || string(ev.Payload) != `{"type":"page"}` {
		t.Fatalf("v1 record decoded as %+v", ev)
	}

	v2, err := os.ReadFile("avsc/signal.v2.avsc")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(v2, &doc); err != nil {
		t.Fatal(err)
	}
	doc["fields"] = append(doc["fields"].([]any), map[string]any{"name": "score_from_the_future", "type": "int", "default": 0})
	newer, _ := json.Marshal(doc)
	ss, err = cl.CreateSchema(ctx, schemas.Subject(registryTopic(t, schemas.TopicResolved)), sr.Schema{Schema: string(newer)})
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	sig := &schemas.Signal{Tenant: "acme", SignalID: "s9", Version: 1, ReceivedAt: time.UnixMilli(1764590000000).UTC()}
	cur, err := schemas.EncodeSignal(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := avro.Unmarshal(schemas.Signals.Schema(), cur[10:], &rec); err != nil {
		t.Fatal(err)
	}
	rec["score_from_the_future"] = 42
	body, err = avro.Marshal(avro.MustParse(string(newer)), rec)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.Signal
	if err := schemas.Signals.DecodeWith(reg, frame(ss.ID, body), &got); err != nil {
		t.Fatalf("record of a newer writer: %v", err)
	}
	if got.SignalID != "s9" || got.Tenant != "acme" {
		t.Fatalf("newer writer's record decoded as %+v", got)
	}
}

// TestRegistryErrors: an id the registry does not have is ErrUnknownSchemaID, a registry-framed record read
// without a registry is ErrNoRegistry, and a registry that does not answer fails NewRegistry at once.
func TestRegistryErrors(t *testing.T) {
	reg, _ := openRegistry(t)
	var s schemas.Signal
	unknown := frame(0x7ffffff0, []byte{0})
	err := schemas.Signals.DecodeWith(reg, unknown, &s)
	if !errors.Is(err, schemas.ErrUnknownSchemaID) || !strings.Contains(err.Error(), "2147483632") {
		t.Fatalf("unknown id: %v, want ErrUnknownSchemaID naming the id", err)
	}
	if _, err := schemas.ViewRecordWith(reg, schemas.TopicResolved, unknown); !errors.Is(err, schemas.ErrUnknownSchemaID) {
		t.Fatalf("ViewRecordWith, unknown id: %v", err)
	}
	if err := schemas.Signals.Decode(unknown, &s); !errors.Is(err, schemas.ErrNoRegistry) {
		t.Fatalf("no registry: %v, want ErrNoRegistry", err)
	}
	var ev schemas.RawEvent
	if err := schemas.DecodeRawEvent(unknown, &ev); !errors.Is(err, schemas.ErrNoRegistry) {
		t.Fatalf("raw event, no registry: %v, want ErrNoRegistry", err)
	}
	if _, err := reg.Header(schemas.DeadLetters); err == nil {
		t.Fatal("Header of a schema never registered: no error")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/apis/ccompat/v7"
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := schemas.NewRegistry(ctx, down); !errors.Is(err, schemas.ErrRegistryUnavailable) || !strings.Contains(err.Error(), down) {
		t.Fatalf("registry down: %v, want ErrRegistryUnavailable naming %s", err, down)
	}
}

func frame(id int, body []byte) []byte {
	b := make([]byte, 5, 5+len(body))
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return append(b, body...)
}

// TestSchemaRegistryServerError: a lookup the registry answers with a server error is ErrRegistryUnavailable (a
// record the stage may retry or redrive later), not ErrUnknownSchemaID, and is asked once per decode. (A stand-in
// HTTP server: the real registry cannot be made to fail on one request.)
func TestSchemaRegistryServerError(t *testing.T) {
	var lookups atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/subjects" {
			_, _ = w.Write([]byte("[]"))
			return
		}
		lookups.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error_code":50001,"message":"storage down"}`))
	}))
	defer srv.Close()
	reg, err := schemas.NewRegistry(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var ev schemas.RawEvent
	err = schemas.DecodeRawEventWith(reg, frame(3, []byte{0}), &ev)
	if !errors.Is(err, schemas.ErrRegistryUnavailable) || errors.Is(err, schemas.ErrUnknownSchemaID) || !strings.Contains(err.Error(), "storage down") {
		t.Fatalf("server error: %v, want ErrRegistryUnavailable with the registry's message", err)
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for one record, want 1", n)
	}
}

// TestEncodeSignalAllocatesOnce: framing for a registry (or none) adds no allocation to the hand-written
// encoder the processor runs per signal.
func TestEncodeSignalAllocatesOnce(t *testing.T) {
	sig := &schemas.Signal{Tenant: "acme", SignalID: "s1", Version: 3, Event: "Demo Requested", Payload: []byte(`{}`)}
	if n := testing.AllocsPerRun(100, func() { _, _ = schemas.EncodeSignalWith(nil, sig) }); n != 1 {
		t.Fatalf("EncodeSignalWith(nil): %v allocations, want 1", n)
	}
}
