package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// randomSignal fills every field from r, with the edge cases of the encoding: empty and multi-byte-length
// strings, non-ASCII text, negative and large numbers, times before 1970 with sub-millisecond parts.
func randomSignal(r *rand.Rand, mapped int) *Signal {
	str := func() string {
		switch r.IntN(5) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("x", r.IntN(300)) // lengths past one varint byte
		case 2:
			return "ünïcødé ✓ " + fmt.Sprint(r.Int64())
		default:
			return fmt.Sprint(r.Uint64())
		}
	}
	num := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64N(math.MaxInt64)
		case 2:
			return math.MinInt64 + r.Int64N(2)
		default:
			return r.Int64()
		}
	}
	when := func() time.Time {
		// ±300 years around 1970, nanosecond precision: what the codec truncates is what hamba truncates
		return time.Unix(r.Int64N(2*300*365*86400)-300*365*86400, r.Int64N(1e9))
	}
	s := &Signal{Tenant: str(), SignalID: str(), Version: num(), Status: str(), Source: str(), Type: str(),
		Event: str(), MessageID: str(), AnonymousID: str(), UserID: str(), Email: str(), URL: str(), PageName: str(),
		Properties: str(), Traits: str(), RuleID: str(), MappedName: str(), Mapped: map[string]string{},
		EventTime: when(), ReceivedAt: when(), ProcessedAt: when(), RawPartition: int32(num()), RawOffset: num(),
		Payload: []byte(str()), GroupID: str(), PreviousID: str(), EmailDomain: str()}
	for _, p := range s.EventContext.strings() {
		*p = str()
	}
	for i := 0; i < mapped; i++ {
		s.Mapped[fmt.Sprint("field", i, str())] = str()
	}
	if r.IntN(4) == 0 && mapped == 0 {
		s.Mapped = nil // as a zero Signal has it
	}
	return s
}

// randomRawEvent fills every field of a RawEvent from r (the same edge cases as randomSignal).
func randomRawEvent(r *rand.Rand, str func() string, num func() int64) *RawEvent {
	ev := &RawEvent{Tenant: str(), KeyID: str(), Source: str(), ReceivedAt: time.UnixMilli(num() % (1 << 50)).UTC(),
		RequestID: str(), Payload: []byte(str())}
	f := &ev.EventFields
	f.Contract = int32(num())
	for _, p := range []*string{&f.Type, &f.Event, &f.MessageID, &f.AnonymousID, &f.UserID, &f.GroupID, &f.PreviousID,
		&f.VisitorKind, &f.VisitorID, &f.Email, &f.URL, &f.PageName, &f.Properties, &f.Traits, &f.SignalID} {
		*p = str()
	}
	f.EventTimeMs, f.OriginalTimestampMs, f.SentAtMs = num(), num(), num()
	for _, p := range f.EventContext.strings() {
		*p = str()
	}
	return ev
}

func randomGen(r *rand.Rand) (func() string, func() int64) {
	str := func() string {
		switch r.IntN(5) {
		case 0:
			return ""
		case 1:
			return strings.Repeat("x", r.IntN(300))
		case 2:
			return "ünïcødé ✓ " + fmt.Sprint(r.Int64())
		default:
			return fmt.Sprint(r.Uint64())
		}
	}
	num := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return -r.Int64N(math.MaxInt32)
		default:
			return r.Int64N(math.MaxInt32)
		}
	}
	return str, num
}

// The edge's hand encoder and the processor's hand decoder are the codec's encoding, field for field.
func TestRawEventHandCodecIsTheCodecs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	str, num := randomGen(r)
	for i := 0; i < 2000; i++ {
		ev := randomRawEvent(r, str, num)
		if i == 0 {
			ev.Payload = bytes.Repeat([]byte("x"), 70000)
		}
		want, err := RawEvents.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendRawEvent(nil, ev)
		if !bytes.Equal(got, want) {
			t.Fatalf("event %d: encodings differ\n got %x\nwant %x", i, got[:min(len(got), 64)], want[:min(len(want), 64)])
		}
		if n := RawEventSize(ev); n < len(got) {
			t.Errorf("RawEventSize %d < encoded %d", n, len(got))
		}
		var back RawEvent
		if err := DecodeRawEvent(got, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, ev) {
			t.Fatalf("event %d: DecodeRawEvent\n got %+v\nwant %+v", i, back, *ev)
		}
		if err := DecodeRawEvent(got[:len(got)-1], &back); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated record: %v", err)
		}
		var f EventFields
		if err := DecodeEventFields(AppendEventFields(nil, &ev.EventFields), &f); err != nil || f != ev.EventFields {
			t.Fatalf("event %d: event fields round trip: %+v, %v", i, f, err)
		}
	}
}

// A raw_event.v1 record (what the edge wrote before the contract) still decodes, with the contract's fields at
// their defaults: Contract 0 tells a reader to derive them.
func TestDecodeRawEventV1(t *testing.T) {
	v1, err := avscFS.ReadFile("avsc/raw_event.v1.avsc")
	if err != nil {
		t.Fatal(err)
	}
	type rawEventV1 struct {
		Tenant     string    `avro:"tenant"`
		KeyID      string    `avro:"key_id"`
		Source     string    `avro:"source"`
		ReceivedAt time.Time `avro:"received_at"`
		RequestID  string    `avro:"request_id"`
		Payload    []byte    `avro:"payload"`
	}
	old, err := NewCodec[rawEventV1]("raw_event", string(v1))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 5, 0, 0, 123e6, time.UTC)
	b := mustEncode(t, old, &rawEventV1{Tenant: "acme", KeyID: "k1", Source: SourceSegment, ReceivedAt: at, Payload: []byte(`{"a":1}`)})
	var ev RawEvent
	if err := DecodeRawEvent(b, &ev); err != nil {
		t.Fatal(err)
	}
	want := RawEvent{Tenant: "acme", KeyID: "k1", Source: SourceSegment, ReceivedAt: at, Payload: []byte(`{"a":1}`)}
	want.Properties, want.Traits = "{}", "{}"
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("v1 record read as\n %+v\nwant %+v", ev, want)
	}
}

func TestEncodeSignalIsTheCodecsEncoding(t *testing.T) {
	if !signalFast {
		t.Fatalf("signals' writer schema (fingerprint %#x) is not the one EncodeSignal was written for (%#x): teach "+
			"appendSignal the new schema's fields and update signalFingerprint", Signals.Fingerprint(), uint64(signalFingerprint))
	}
	r := rand.New(rand.NewPCG(1, 2))
	// With at most one mapped entry hamba's bytes are deterministic, so they must be identical.
	for i := 0; i < 2000; i++ {
		s := randomSignal(r, i%2)
		want, err := Signals.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeSignal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("signal %d: EncodeSignal differs from Signals.Encode\n got % x\nwant % x", i, got, want)
		}
	}
}

func TestEncodeSignalManyMappedFields(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{2, 7, 100, 101, 250} { // 100 entries fill one block; more take several
		s := randomSignal(r, n)
		b, err := EncodeSignal(s)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := EncodeSignal(s)
		if !bytes.Equal(b, again) {
			t.Fatalf("%d mapped: the encoding depends on map order", n)
		}
		var got Signal
		if err := Signals.Decode(b, &got); err != nil {
			t.Fatalf("%d mapped: %v", n, err)
		}
		want := *s
		for _, p := range []*time.Time{&want.EventTime, &want.ReceivedAt, &want.ProcessedAt} {
			*p = time.UnixMilli(timestampMillis(*p)).UTC()
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%d mapped: decoded\n %+v\nwant %+v", n, got, want)
		}
		// hamba splits the entries into blocks in map order, so past one block the block sizes may differ
		if hamba, _ := Signals.Encode(s); n <= 100 && len(hamba) != len(b) {
			t.Fatalf("%d mapped: %d bytes, hamba writes %d", n, len(b), len(hamba))
		}
	}
}

func BenchmarkEncodeSignal(b *testing.B) {
	s := randomSignal(rand.New(rand.NewPCG(5, 6)), 0)
	s.Payload = bytes.Repeat([]byte("p"), 440)
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := EncodeSignal(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hamba", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := Signals.Encode(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeRawEvent is what the processor pays per input record to decode it: the hand decoder of a
// raw_event.v2 record (what the edge writes now), and the reflective codec on a raw_event.v1 record (what it read
// before the contract; Go decodes it into the v2 struct through schema resolution).
func BenchmarkDecodeRawEvent(b *testing.B) {
	// The fields the contract derives of the ingest benchmarks' 442-byte track event.
	ev := &RawEvent{Tenant: "dev", KeyID: "dev", Source: SourceSegment, ReceivedAt: time.UnixMilli(1796014801000),
		RequestID: "0a1b2c3d-1", Payload: bytes.Repeat([]byte("p"), 442)}
	ev.EventFields = EventFields{Contract: 1, Type: "track", Event: "Signed Up", MessageID: "msg-anon-00000001-1",
		AnonymousID: "anon-00000001", VisitorKind: IDKindAnonymous, VisitorID: "anon-00000001",
		URL: "https://example.com/pricing", Properties: `{"plan":"pro","source":"landing","value":1}`, Traits: "{}",
		EventTimeMs: 1796014800900, OriginalTimestampMs: 1796014800000, SentAtMs: 1796014800100,
		SignalID: strings.Repeat("ab", 32), EventContext: EventContext{PagePath: "/pricing", PageTitle: "Pricing",
			UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", IP: "203.0.113.9", LibraryName: "analytics.js", LibraryVersion: "4.1.0"}}
	v2 := AppendRawEvent(nil, ev)
	b.Run("v2-hand", func(b *testing.B) {
		b.ReportAllocs()
		var back RawEvent
		for b.Loop() {
			if err := DecodeRawEvent(v2, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
	v1src, _ := avscFS.ReadFile("avsc/raw_event.v1.avsc")
	type rawEventV1 struct {
		Tenant     string    `avro:"tenant"`
		KeyID      string    `avro:"key_id"`
		Source     string    `avro:"source"`
		ReceivedAt time.Time `avro:"received_at"`
		RequestID  string    `avro:"request_id"`
		Payload    []byte    `avro:"payload"`
	}
	c1, _ := NewCodec[rawEventV1]("raw_event", string(v1src))
	v1, _ := c1.Encode(&rawEventV1{Tenant: ev.Tenant, KeyID: ev.KeyID, Source: ev.Source, ReceivedAt: ev.ReceivedAt, Payload: ev.Payload})
	b.Run("v1-codec", func(b *testing.B) {
		b.ReportAllocs()
		var back RawEvent
		for b.Loop() {
			if err := DecodeRawEvent(v1, &back); err != nil {
				b.Fatal(err)
			}
		}
	})
}
