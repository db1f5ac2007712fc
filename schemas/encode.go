package schemas

import (
	"encoding/binary"
	"slices"
	"time"
)

// The records the pipeline writes once per event are encoded by hand instead of through the reflective codec:
// the same single-object bytes (tests hold them equal to the codec's), appended with no allocation of their own.

// AppendRawEvent appends the single-object encoding of a RawEvent with these fields to dst: what
// RawEvents.Encode writes, without building the struct. The edge encodes every event it accepts with it.
func AppendRawEvent(dst []byte, tenant, keyID, source string, receivedAt time.Time, requestID string, payload []byte) []byte {
	dst = append(dst, RawEvents.header[:]...)
	dst = appendString(dst, tenant)
	dst = appendString(dst, keyID)
	dst = appendString(dst, source)
	dst = appendLong(dst, timestampMillis(receivedAt))
	dst = appendString(dst, requestID)
	dst = appendLong(dst, int64(len(payload)))
	return append(dst, payload...)
}

// RawEventSize bounds the size AppendRawEvent appends for fields of these lengths.
func RawEventSize(tenant, keyID, source, requestID string, payload int) int {
	return headerLen + 6*binary.MaxVarintLen64 + len(tenant) + len(keyID) + len(source) + len(requestID) + payload
}

// signalV1Fingerprint is the CRC-64-AVRO fingerprint of signal.v1.avsc, the schema appendSignal is written for.
// When a newer Signal schema becomes the writer schema, EncodeSignal falls back to the reflective codec until
// appendSignal is taught the new fields (TestEncodeSignalIsTheCodecsEncoding fails meanwhile, so the fallback is
// never silent).
const signalV1Fingerprint = 0xc887ad2d4173f078

// signalFast reports whether appendSignal's hand-written body matches the codec's writer schema.
var signalFast = Signals.Fingerprint() == signalV1Fingerprint

// EncodeSignal is Signals.Encode without reflection: one allocation, the result. The processor encodes every
// signal it emits (about 1 µs and 10 allocations per signal through hamba's reflective encoder). The bytes are
// those Signals.Encode writes, except that the mapped entries are written in key order rather than Go's random
// map order, so the same signal always encodes the same.
func EncodeSignal(s *Signal) ([]byte, error) {
	if !signalFast {
		return Signals.Encode(s)
	}
	n := headerLen + 24*binary.MaxVarintLen64 + len(s.Payload) + len(s.Tenant) + len(s.SignalID) + len(s.Status) +
		len(s.Source) + len(s.Type) + len(s.Event) + len(s.MessageID) + len(s.AnonymousID) + len(s.UserID) +
		len(s.Email) + len(s.URL) + len(s.PageName) + len(s.Properties) + len(s.Traits) + len(s.RuleID) +
		len(s.MappedName)
	for k, v := range s.Mapped {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return appendSignal(make([]byte, 0, n), s), nil
}

// appendSignal appends the single-object encoding of s with signal.v1.avsc, field by field in schema order.
func appendSignal(b []byte, s *Signal) []byte {
	b = append(b, Signals.header[:]...)
	b = appendString(b, s.Tenant)
	b = appendString(b, s.SignalID)
	b = appendLong(b, s.Version)
	b = appendString(b, s.Status)
	b = appendString(b, s.Source)
	b = appendString(b, s.Type)
	b = appendString(b, s.Event)
	b = appendString(b, s.MessageID)
	b = appendString(b, s.AnonymousID)
	b = appendString(b, s.UserID)
	b = appendString(b, s.Email)
	b = appendString(b, s.URL)
	b = appendString(b, s.PageName)
	b = appendString(b, s.Properties)
	b = appendString(b, s.Traits)
	b = appendString(b, s.RuleID)
	b = appendString(b, s.MappedName)
	b = appendStringMap(b, s.Mapped)
	b = appendLong(b, timestampMillis(s.EventTime))
	b = appendLong(b, timestampMillis(s.ReceivedAt))
	b = appendLong(b, timestampMillis(s.ProcessedAt))
	b = appendLong(b, int64(s.RawPartition))
	b = appendLong(b, s.RawOffset)
	b = appendLong(b, int64(len(s.Payload)))
	return append(b, s.Payload...)
}

// appendLong appends an Avro long (and int): a zig-zag varint, which is encoding/binary's varint.
func appendLong(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte {
	b = appendLong(b, int64(len(s)))
	return append(b, s...)
}

// appendStringMap appends a map<string> as hamba does: one block with a negative count and its byte size (so
// readers can skip it), then the empty block that ends the map; an empty map is the end block alone. Keys are
// sorted so the encoding is deterministic.
func appendStringMap(b []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return appendLong(b, 0)
	}
	var keysBuf [16]string
	keys := keysBuf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for len(keys) > 0 {
		blk := keys[:min(len(keys), mapBlockLen)]
		keys = keys[len(blk):]
		size := 0
		for _, k := range blk {
			size += longLen(int64(len(k))) + len(k) + longLen(int64(len(m[k]))) + len(m[k])
		}
		b = appendLong(b, -int64(len(blk)))
		b = appendLong(b, int64(size))
		for _, k := range blk {
			b = appendString(b, k)
			b = appendString(b, m[k])
		}
	}
	return appendLong(b, 0)
}

// mapBlockLen is hamba's default block length for arrays and maps.
const mapBlockLen = 100

// longLen is the encoded size of an Avro long.
func longLen(l int64) int {
	var buf [binary.MaxVarintLen64]byte
	return len(appendLong(buf[:0], l))
}

// timestampMillis is the timestamp-millis value of t, as hamba computes it.
func timestampMillis(t time.Time) int64 { return t.Unix()*1e3 + int64(t.Nanosecond()/1e6) }
