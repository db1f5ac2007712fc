package schemas

import (
	"encoding/binary"
	"fmt"
	"time"
)

// DecodeRawEvent decodes a signals.raw record into ev. A record written with the newest schema (what the edge
// writes) is decoded by hand: one allocation holds every string of ev, and ev.Payload aliases b, so b must not
// change while ev is in use. Older versions go through RawEvents.Decode. Errors are Codec.Decode's.
func DecodeRawEvent(b []byte, ev *RawEvent) error { return DecodeRawEventWith(nil, b, ev) }

// DecodeRawEventWith is DecodeRawEvent for a reader that also reads the schema registry wire format (reg may be
// nil): a registry-framed record whose id names the newest schema takes the same hand-written path.
func DecodeRawEventWith(reg *Registry, b []byte, ev *RawEvent) error {
	if id, ok := registryFramed(b); ok && reg != nil {
		ws, err := reg.schemaByID(id)
		if err != nil {
			return fmt.Errorf("decoding raw_event: %w", err) // not twice: a registry that is down costs one timeout
		}
		if ws.fp == RawEvents.Fingerprint() {
			return decodeRawEventBody(b[registryHeaderLen:], ev)
		}
		return RawEvents.DecodeWith(reg, b, ev)
	}
	if len(b) < headerLen || b[0] != 0xC3 || b[1] != 0x01 || binary.LittleEndian.Uint64(b[2:headerLen]) != RawEvents.Fingerprint() {
		return RawEvents.DecodeWith(reg, b, ev)
	}
	return decodeRawEventBody(b[headerLen:], ev)
}

func decodeRawEventBody(body []byte, ev *RawEvent) error {
	r := fastReader{b: body, all: string(body)}
	*ev = RawEvent{}
	ev.Tenant, ev.KeyID, ev.Source = r.str(), r.str(), r.str()
	ev.ReceivedAt = time.UnixMilli(r.long()).UTC()
	ev.RequestID = r.str()
	ev.Payload = r.bytes()
	r.eventFields(&ev.EventFields)
	if r.err != nil {
		return fmt.Errorf("decoding raw_event: %w: %v", ErrCorrupt, r.err)
	}
	if r.off != len(r.b) {
		return fmt.Errorf("decoding raw_event: %w: trailing bytes", ErrCorrupt)
	}
	return nil
}

// DecodeEventFields reads what AppendEventFields wrote (all of b) into f; its strings share one allocation.
func DecodeEventFields(b []byte, f *EventFields) error {
	r := fastReader{b: b, all: string(b)}
	*f = EventFields{}
	r.eventFields(f)
	if r.err != nil {
		return fmt.Errorf("decoding event fields: %w: %v", ErrCorrupt, r.err)
	}
	if r.off != len(r.b) {
		return fmt.Errorf("decoding event fields: %w: trailing bytes", ErrCorrupt)
	}
	return nil
}

func (r *fastReader) eventFields(f *EventFields) {
	f.Contract = int32(r.long())
	for _, s := range [...]*string{&f.Type, &f.Event, &f.MessageID, &f.AnonymousID, &f.UserID, &f.GroupID, &f.PreviousID,
		&f.VisitorKind, &f.VisitorID, &f.Email, &f.URL, &f.PageName, &f.Properties, &f.Traits} {
		*s = r.str()
	}
	f.EventTimeMs, f.OriginalTimestampMs, f.SentAtMs = r.long(), r.long(), r.long()
	f.SignalID = r.str()
	for _, s := range f.EventContext.strings() {
		*s = r.str()
	}
}

// fastReader reads Avro longs and strings of one record body; strings are substrings of all (the body as one
// string), so a whole record costs one allocation. The first error sticks.
type fastReader struct {
	b   []byte
	all string
	off int
	err error
}

func (r *fastReader) long() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		r.err = fmt.Errorf("bad long at %d", r.off)
		return 0
	}
	r.off += n
	return v
}

func (r *fastReader) span() (int, int) {
	n := r.long()
	if r.err != nil {
		return 0, 0
	}
	if n < 0 || n > int64(len(r.b)-r.off) {
		r.err = fmt.Errorf("bad length %d at %d", n, r.off)
		return 0, 0
	}
	s := r.off
	r.off += int(n)
	return s, r.off
}

func (r *fastReader) str() string {
	s, e := r.span()
	return r.all[s:e]
}

func (r *fastReader) bytes() []byte {
	s, e := r.span()
	return r.b[s:e:e]
}
