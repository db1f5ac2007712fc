package schemas

import (
	"bytes"
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
		Payload: []byte(str())}
	for i := 0; i < mapped; i++ {
		s.Mapped[fmt.Sprint("field", i, str())] = str()
	}
	if r.IntN(4) == 0 && mapped == 0 {
		s.Mapped = nil // as a zero Signal has it
	}
	return s
}

func TestAppendRawEventIsTheCodecsEncoding(t *testing.T) {
	at := time.Date(2026, 11, 30, 5, 0, 0, 123e6, time.UTC)
	for _, payload := range [][]byte{nil, []byte(`{}`), bytes.Repeat([]byte("x"), 70000)} {
		ev := RawEvent{Tenant: "acme", KeyID: "k1", Source: SourceSegment, ReceivedAt: at, RequestID: "req-1", Payload: payload}
		want, err := RawEvents.Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendRawEvent(nil, ev.Tenant, ev.KeyID, ev.Source, at, ev.RequestID, payload)
		if !bytes.Equal(got, want) {
			t.Fatalf("payload of %d bytes: encodings differ\n got %x\nwant %x", len(payload), got[:min(len(got), 64)], want[:min(len(want), 64)])
		}
		if n := RawEventSize(ev.Tenant, ev.KeyID, ev.Source, ev.RequestID, len(payload)); n < len(got) {
			t.Errorf("RawEventSize %d < encoded %d", n, len(got))
		}
	}
}

func TestEncodeSignalIsTheCodecsEncoding(t *testing.T) {
	if !signalFast {
		t.Fatalf("signals' writer schema (fingerprint %#x) is not the one EncodeSignal was written for (%#x): teach "+
			"appendSignal the new schema's fields and update signalV1Fingerprint", Signals.Fingerprint(), uint64(signalV1Fingerprint))
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
