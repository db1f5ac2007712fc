package schemas

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// The records the pipeline writes once per event are encoded by hand instead of through the reflective codec:
// the same single-object bytes (tests hold them equal to the codec's), appended with no allocation of their own.

// AppendRawEvent appends the single-object encoding of ev with raw_event.v2 (the writer schema) to dst: what
// RawEvents.Encode writes, without reflection and without allocating. The edge encodes every event it accepts
// with it.
func AppendRawEvent(dst []byte, ev *RawEvent) []byte {
	return AppendRawEventFramed(dst, RawEvents.header[:], ev)
}

// AppendRawEventFramed is AppendRawEvent with the header given: Registry.Header(RawEvents), so the same bytes
// follow either framing.
func AppendRawEventFramed(dst, header []byte, ev *RawEvent) []byte {
	dst = append(dst, header...)
	dst = appendString(dst, ev.Tenant)
	dst = appendString(dst, ev.KeyID)
	dst = appendString(dst, ev.Source)
	dst = appendLong(dst, timestampMillis(ev.ReceivedAt))
	dst = appendString(dst, ev.RequestID)
	dst = appendLong(dst, int64(len(ev.Payload)))
	dst = append(dst, ev.Payload...)
	return AppendEventFields(dst, &ev.EventFields)
}

// AppendEventFields appends f as raw_event.v2 encodes the fields after payload (Avro binary, schema order):
// what a reader that keeps an event's derived fields apart from its payload stores (the processor's held
// signals). DecodeEventFields reads it back.
func AppendEventFields(b []byte, f *EventFields) []byte {
	b = appendLong(b, int64(f.Contract))
	// Field by field rather than over an array of them: no copy of the strings per event.
	b = appendString(b, f.Type)
	b = appendString(b, f.Event)
	b = appendString(b, f.MessageID)
	b = appendString(b, f.AnonymousID)
	b = appendString(b, f.UserID)
	b = appendString(b, f.GroupID)
	b = appendString(b, f.PreviousID)
	b = appendString(b, f.VisitorKind)
	b = appendString(b, f.VisitorID)
	b = appendString(b, f.Email)
	b = appendString(b, f.URL)
	b = appendString(b, f.PageName)
	b = appendString(b, f.Properties)
	b = appendString(b, f.Traits)
	b = appendLong(b, f.EventTimeMs)
	b = appendLong(b, f.OriginalTimestampMs)
	b = appendLong(b, f.SentAtMs)
	b = appendString(b, f.SignalID)
	return appendEventContext(b, &f.EventContext)
}

func appendEventContext(b []byte, x *EventContext) []byte {
	// In schema order (EventContext.strings), field by field.
	b = appendString(b, x.UTMSource)
	b = appendString(b, x.UTMMedium)
	b = appendString(b, x.UTMCampaign)
	b = appendString(b, x.UTMTerm)
	b = appendString(b, x.UTMContent)
	b = appendString(b, x.Referrer)
	b = appendString(b, x.PagePath)
	b = appendString(b, x.PageTitle)
	b = appendString(b, x.PageSearch)
	b = appendString(b, x.UserAgent)
	b = appendString(b, x.IP)
	b = appendString(b, x.Locale)
	b = appendString(b, x.Timezone)
	b = appendString(b, x.LibraryName)
	return appendString(b, x.LibraryVersion)
}

// strings returns the fields in schema order.
func (x *EventContext) strings() [15]*string {
	return [...]*string{&x.UTMSource, &x.UTMMedium, &x.UTMCampaign, &x.UTMTerm, &x.UTMContent, &x.Referrer,
		&x.PagePath, &x.PageTitle, &x.PageSearch, &x.UserAgent, &x.IP, &x.Locale, &x.Timezone, &x.LibraryName,
		&x.LibraryVersion}
}

func (x *EventContext) size() int {
	n := 15 * binary.MaxVarintLen64
	for _, s := range x.strings() {
		n += len(*s)
	}
	return n
}

// EventFieldsSize bounds the size AppendEventFields appends for f.
func EventFieldsSize(f *EventFields) int {
	return 20*binary.MaxVarintLen64 + len(f.Type) + len(f.Event) + len(f.MessageID) + len(f.AnonymousID) +
		len(f.UserID) + len(f.GroupID) + len(f.PreviousID) + len(f.VisitorKind) + len(f.VisitorID) + len(f.Email) +
		len(f.URL) + len(f.PageName) + len(f.Properties) + len(f.Traits) + len(f.SignalID) + f.EventContext.size()
}

// RawEventSize bounds the size AppendRawEvent appends for ev.
func RawEventSize(ev *RawEvent) int {
	f := &ev.EventFields
	n := headerLen + 28*binary.MaxVarintLen64 + len(ev.Tenant) + len(ev.KeyID) + len(ev.Source) + len(ev.RequestID) +
		len(ev.Payload) + len(f.Type) + len(f.Event) + len(f.MessageID) + len(f.AnonymousID) + len(f.UserID) +
		len(f.GroupID) + len(f.PreviousID) + len(f.VisitorKind) + len(f.VisitorID) + len(f.Email) + len(f.URL) +
		len(f.PageName) + len(f.Properties) + len(f.Traits) + len(f.SignalID)
	return n + f.EventContext.size()
}

// signalFingerprint is the CRC-64-AVRO fingerprint of signal.v2.avsc, the schema appendSignal is written for.
// When a newer Signal schema becomes the writer schema, EncodeSignal falls back to the reflective codec until
// appendSignal is taught the new fields (TestEncodeSignalIsTheCodecsEncoding fails meanwhile, so the fallback is
// never silent).
const signalFingerprint = 0xa6090fed999756db

// signalFast reports whether appendSignal's hand-written body matches the codec's writer schema.
var signalFast = Signals.Fingerprint() == signalFingerprint

// EncodeSignal is Signals.Encode without reflection: one allocation, the result. The processor encodes every
// signal it emits (about 1 µs and 10 allocations per signal through hamba's reflective encoder). The bytes are
// those Signals.Encode writes, except that the mapped entries are written in key order rather than Go's random
// map order, so the same signal always encodes the same.
func EncodeSignal(s *Signal) ([]byte, error) { return EncodeSignalWith(nil, s) }

// EncodeSignalWith is EncodeSignal framed for reg (Codec.EncodeWith): the registry wire format, or single-object
// when reg is nil.
func EncodeSignalWith(reg *Registry, s *Signal) ([]byte, error) {
	if !signalFast {
		return Signals.EncodeWith(reg, s)
	}
	hdr := Signals.header[:]
	if reg != nil {
		var err error
		if hdr, err = reg.Header(Signals); err != nil {
			return nil, fmt.Errorf("encoding signal: %w", err)
		}
	}
	n := len(hdr) + 24*binary.MaxVarintLen64 + len(s.Payload) + len(s.Tenant) + len(s.SignalID) + len(s.Status) +
		len(s.Source) + len(s.Type) + len(s.Event) + len(s.MessageID) + len(s.AnonymousID) + len(s.UserID) +
		len(s.Email) + len(s.URL) + len(s.PageName) + len(s.Properties) + len(s.Traits) + len(s.RuleID) +
		len(s.MappedName) + len(s.GroupID) + len(s.PreviousID) + len(s.EmailDomain) + s.EventContext.size()
	for k, v := range s.Mapped {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	return appendSignal(make([]byte, 0, n), hdr, s), nil
}

// appendSignal appends header and the Avro body of s with signal.v2.avsc, field by field in schema order.
func appendSignal(b, header []byte, s *Signal) []byte {
	b = append(b, header...)
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
	b = append(b, s.Payload...)
	b = appendString(b, s.GroupID)
	b = appendString(b, s.PreviousID)
	b = appendString(b, s.EmailDomain)
	return appendEventContext(b, &s.EventContext)
}

// appendLong appends an Avro long (and int): a zig-zag varint, which is encoding/binary's varint.
func appendLong(b []byte, v int64) []byte { return binary.AppendVarint(b, v) }

func appendString(b []byte, s string) []byte {
	if len(s) < 64 { // the zig-zag varint of a length below 64 is one byte: 2 × len
		return append(append(b, byte(len(s)<<1)), s...)
	}
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
