package schemas

import (
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

func ms0(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

func TestRoundTrip(t *testing.T) {
	now := ms0(time.Now())
	raw := RawEvent{Tenant: "t1", KeyID: "k1", Source: SourceSegment, ReceivedAt: now, RequestID: "r", Payload: []byte(`{"type":"track"}`)}
	sig := Signal{Tenant: "t1", SignalID: "abc", Version: 3, Status: StatusLinked, Source: SourceSegment, Type: "track",
		Event: "Signed Up", Email: "a@b.c", Properties: `{"plan":"pro"}`, Traits: "{}", Mapped: map[string]string{"company": "Acme"},
		EventTime: now, ReceivedAt: now, ProcessedAt: now, RawPartition: 4, RawOffset: 99, Payload: []byte(`{}`)}
	link := IdentityLink{Tenant: "t1", IDKind: IDKindAnonymous, ID: "anon", Email: "a@b.c", AnonymousID: "anon", Traits: "{}", LinkedAt: now}
	dl := DeadLetter{Tenant: "t1", Stage: "sink", Reason: "bad", Topic: "x", Partition: 1, Offset: 2, Key: []byte("k"), Payload: []byte{1, 2}, Retries: 3, FailedAt: now}

	check := func(t *testing.T, enc func() ([]byte, error), dec func([]byte) (any, error), want any) {
		t.Helper()
		b, err := enc()
		if err != nil {
			t.Fatal(err)
		}
		if b[0] != 0xC3 || b[1] != 0x01 {
			t.Fatalf("missing single-object marker: % x", b[:2])
		}
		got, err := dec(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
	t.Run("RawEvent", func(t *testing.T) {
		check(t, func() ([]byte, error) { return RawEvents.Encode(&raw) },
			func(b []byte) (any, error) { var v RawEvent; return v, RawEvents.Decode(b, &v) }, raw)
	})
	t.Run("Signal", func(t *testing.T) {
		check(t, func() ([]byte, error) { return Signals.Encode(&sig) },
			func(b []byte) (any, error) { var v Signal; return v, Signals.Decode(b, &v) }, sig)
	})
	t.Run("IdentityLink", func(t *testing.T) {
		check(t, func() ([]byte, error) { return IdentityLinks.Encode(&link) },
			func(b []byte) (any, error) { var v IdentityLink; return v, IdentityLinks.Decode(b, &v) }, link)
	})
	t.Run("DeadLetter", func(t *testing.T) {
		check(t, func() ([]byte, error) { return DeadLetters.Encode(&dl) },
			func(b []byte) (any, error) { var v DeadLetter; return v, DeadLetters.Decode(b, &v) }, dl)
	})
}

func TestDecodeErrors(t *testing.T) {
	good, err := RawEvents.Encode(&RawEvent{Tenant: "t", Payload: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	unknown := append([]byte{}, good...)
	unknown[5] ^= 0xFF
	truncated := good[:len(good)-3]
	hugeLen := append(append([]byte{}, good[:headerLen]...), 0xFE, 0xFF, 0xFF, 0xFF, 0x0F) // tenant length ~2^31
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotSingleObject},
		{"short", []byte{0xC3, 0x01, 1}, ErrNotSingleObject},
		{"no marker", append([]byte{0x42, 0x01}, good[2:]...), ErrNotSingleObject},
		// Magic byte 0 is the schema registry wire format: without a registry, a clear error of its own.
		{"registry framed, no registry", append([]byte{0x00, 0, 0, 0, 7}, good[headerLen:]...), ErrNoRegistry},
		{"short registry frame", []byte{0x00, 0, 0}, ErrNotSingleObject},
		{"json", []byte(`{"type":"track","anonymousId":"x"}`), ErrNotSingleObject},
		{"unknown fingerprint", unknown, ErrUnknownFingerprint},
		{"truncated body", truncated, ErrCorrupt},
		{"hostile length", hugeLen, ErrCorrupt},
		{"other record type", mustEncode(t, Signals, &Signal{}), ErrUnknownFingerprint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v RawEvent
			err := RawEvents.Decode(tc.in, &v)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func mustEncode[T any](t *testing.T, c *Codec[T], v *T) []byte {
	t.Helper()
	b, err := c.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawEventFuture is RawEvent as a future version that adds an optional field would declare it.
type rawEventFuture struct {
	RawEvent
	FutureField *string `avro:"future_field"`
}

func TestOldWriterNewReader(t *testing.T) {
	v2, err := avscFS.ReadFile("avsc/raw_event.v2.avsc")
	if err != nil {
		t.Fatal(err)
	}
	future, err := os.ReadFile("testdata/raw_event.future.avsc")
	if err != nil {
		t.Fatal(err)
	}
	oldCodec, err := NewCodec[RawEvent]("raw_event", string(v2))
	if err != nil {
		t.Fatal(err)
	}
	newCodec, err := NewCodec[rawEventFuture]("raw_event", string(v2), string(future))
	if err != nil {
		t.Fatal(err)
	}
	if oldCodec.Fingerprint() == newCodec.Fingerprint() {
		t.Fatal("v1 and v2 share a fingerprint")
	}
	now := ms0(time.Now())
	old := RawEvent{Tenant: "t", KeyID: "k", Source: SourceWebhook, ReceivedAt: now, Payload: []byte(`{"a":1}`)}
	old.Contract, old.SignalID, old.UserAgent, old.Properties, old.Traits = 1, "abc", "curl/8", "{}", "{}"
	var got rawEventFuture
	if err := newCodec.Decode(mustEncode(t, oldCodec, &old), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.RawEvent, old) || got.FutureField != nil {
		t.Fatalf("v2 read as the future version: %+v", got)
	}
	// And the future writer round-trips its new field.
	ff := "x"
	b := mustEncode(t, newCodec, &rawEventFuture{RawEvent: old, FutureField: &ff})
	var back rawEventFuture
	if err := newCodec.Decode(b, &back); err != nil || back.FutureField == nil || *back.FutureField != ff {
		t.Fatalf("future round trip: %+v, %v", back, err)
	}
	// The embedded production codec does not know the test-only future fingerprint.
	var prod RawEvent
	if err := RawEvents.Decode(b, &prod); !errors.Is(err, ErrUnknownFingerprint) {
		t.Fatalf("production codec on v2 record: %v", err)
	}
}

// crc64Avro is the reference algorithm from the Avro specification ("Schema Fingerprints"), written out here so the
// test checks hamba's fingerprint against an independent implementation.
func crc64Avro(b []byte) uint64 {
	const empty = 0xc15d213aa4d7a795
	var table [256]uint64
	for i := range table {
		fp := uint64(i)
		for j := 0; j < 8; j++ {
			fp = (fp >> 1) ^ (empty & -(fp & 1))
		}
		table[i] = fp
	}
	fp := uint64(empty)
	for _, c := range b {
		fp = (fp >> 8) ^ table[byte(fp)^c]
	}
	return fp
}

func TestFingerprintIsCRC64Avro(t *testing.T) {
	for _, c := range []interface {
		Fingerprint() uint64
	}{RawEvents, Signals, IdentityLinks, DeadLetters} {
		var canonical string
		switch c := c.(type) {
		case *Codec[RawEvent]:
			canonical = c.Schema().String()
		case *Codec[Signal]:
			canonical = c.Schema().String()
		case *Codec[IdentityLink]:
			canonical = c.Schema().String()
		case *Codec[DeadLetter]:
			canonical = c.Schema().String()
		}
		if want := crc64Avro([]byte(canonical)); c.Fingerprint() != want {
			t.Errorf("fingerprint %016x, reference CRC-64-AVRO of canonical form %016x", c.Fingerprint(), want)
		}
	}
	b := mustEncode(t, Signals, &Signal{})
	if got := binary.LittleEndian.Uint64(b[2:10]); got != Signals.Fingerprint() {
		t.Fatalf("header carries %016x, want %016x little-endian", got, Signals.Fingerprint())
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := RawEvents.Encode(&RawEvent{Tenant: "t", Payload: []byte("{}")})
	f.Add(good)
	f.Add([]byte{0xC3, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v RawEvent
		_ = RawEvents.Decode(b, &v) // must not panic
	})
}
