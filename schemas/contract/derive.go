package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
	"unsafe"

	"github.com/signalstage/signalstage/schemas"
)

// Version is the version of the contract this package implements, written into every RawEvent it derives
// (schemas.EventFields.Contract). It changes when a rule changes what an event derives.
const Version = 1

// SegmentTypes are the Segment call types, in the order of the ingest metrics' label table.
var SegmentTypes = [...]string{"track", "identify", "page", "screen", "group", "alias"}

// TypeReason is the reason a Segment call with another type is refused.
const TypeReason = "type must be one of track, identify, page, screen, group, alias"

// Input is what Derive needs besides the payload.
type Input struct {
	// Source is schemas.SourceSegment or schemas.SourceWebhook (the edge decides it from the route and the
	// members: see the ingest README). Anything else is read as webhook.
	Source string
	// ReceivedAt is when the edge received the event (RawEvent.ReceivedAt).
	ReceivedAt time.Time
	// Lenient reads an event the edge accepted before the contract existed (a raw_event.v1 record): what the
	// contract refuses (see ErrInvalidEvent) is repaired instead, so every such event derives fields. The edge
	// never sets it.
	Lenient bool
}

// Deriver derives the contract's fields of events. It keeps its buffers between calls: use one per goroutine.
type Deriver struct {
	c    canon
	strs []byte
	pend []pending
	// Unsafe makes the derived strings alias the Deriver's own buffer instead of being copied into one new
	// string per event: they are then valid only until the next Derive. The edge, which encodes each event
	// right after deriving it, sets it; everything that keeps fields leaves it false.
	Unsafe bool
}

// A ref is a derived string before it is made: bytes of the Deriver's buffer, of the input, or of the canonical
// output. In Unsafe mode strings alias the input and the output where they can (the strict canonicalizer
// validated them; only escaped strings are decoded into the buffer); otherwise everything is copied into the
// buffer, which becomes one string.
type ref struct {
	s, e int32
	src  uint8
}

const (
	inStrs = iota
	inInput
	inOut
)

func (r ref) empty() bool { return r.e <= r.s }

type pending struct {
	dst *string
	r   ref
}

// bytes returns the bytes r refers to (valid until the buffer next grows).
func (d *Deriver) bytes(r ref) []byte {
	switch r.src {
	case inInput:
		return d.c.in[r.s:r.e]
	case inOut:
		return d.c.out[r.s:r.e]
	}
	return d.strs[r.s:r.e]
}

// own returns r copied into the buffer (where it may be changed in place).
func (d *Deriver) own(r ref) ref {
	if r.src == inStrs {
		return r
	}
	s := len(d.strs)
	d.strs = append(d.strs, d.bytes(r)...)
	return ref{int32(s), int32(len(d.strs)), inStrs}
}

// set makes *dst the string r refers to: at once when it aliases the input or the output in Unsafe mode (they
// do not move until the next Scan), else in flush, once the buffer stops growing. An empty r leaves *dst as it
// is. No field is set twice with two non-empty refs, so the order of the two ways does not matter.
func (d *Deriver) set(dst *string, r ref) {
	if d.Unsafe && r.src != inStrs {
		if b := d.bytes(r); len(b) > 0 {
			*dst = unsafe.String(&b[0], len(b))
		}
		return
	}
	d.pend = append(d.pend, pending{dst, r})
}

// text returns the text of the value of slot: strings decoded, numbers and booleans as written, "" otherwise.
func (d *Deriver) text(slot int) ref {
	sp := d.c.spans[slot]
	if sp.end == 0 {
		return ref{}
	}
	v := d.c.in[sp.start:sp.end]
	switch c := v[0]; {
	case c == '"':
		inner := v[1 : len(v)-1]
		// The canonicalizer noted which slots hold a string with an escape.
		if d.Unsafe && d.c.strict && d.c.escaped&(1<<slot) == 0 {
			return ref{sp.start + 1, sp.end - 1, inInput}
		}
		s := len(d.strs)
		d.strs, _ = appendDecoded(d.strs, inner)
		return ref{int32(s), int32(len(d.strs)), inStrs}
	case c == '-' || isDigit(c) || c == 't' || c == 'f':
		if d.Unsafe {
			return ref{sp.start, sp.end, inInput}
		}
		s := len(d.strs)
		d.strs = append(d.strs, v...)
		return ref{int32(s), int32(len(d.strs)), inStrs}
	}
	return ref{}
}

// putText sets *dst to the text of the value of slot and reports whether it is non-empty.
func (d *Deriver) putText(dst *string, slot int) bool {
	r := d.text(slot)
	d.set(dst, r)
	return !r.empty()
}

// idText is the text of an id member: a string's contents or a number's literal; ok is false for other types
// (absent and null are "" and ok).
func (d *Deriver) idText(slot int) (ref, bool) {
	sp := d.c.spans[slot]
	if sp.end == 0 {
		return ref{}, true
	}
	switch c := d.c.in[sp.start]; {
	case c == '"' || c == '-' || isDigit(c):
		return d.text(slot), true
	case c == 'n':
		return ref{}, true
	}
	return ref{}, false
}

func (d *Deriver) raw(sp span) []byte {
	if sp.end == 0 {
		return nil
	}
	return d.c.in[sp.start:sp.end]
}

func (d *Deriver) isObject(sp span) bool { return sp.end > 0 && d.c.in[sp.start] == '{' }

// Derive computes the contract's fields of one event: payload is its JSON as stored (after the edge's
// rewrites). It fails with ErrNotObject when payload is not one well-formed JSON object, and (unless in.Lenient)
// with ErrInvalidEvent and the reason when the contract refuses the event. f is overwritten. It is Scan, then
// Finish.
func (d *Deriver) Derive(payload []byte, in Input, f *schemas.EventFields) error {
	if _, err := d.Scan(payload, in.Lenient); err != nil {
		return err
	}
	return d.Finish(in, f)
}

// Scan reads one event, payload, in one pass: it validates it (syntax, and unless lenient what ErrInvalidEvent
// lists), writes its canonical form and records the members the contract reads. It returns the event's Span
// (the root members the edge needs before it decides on a rewrite), aliasing payload. Finish derives the fields.
func (d *Deriver) Scan(payload []byte, lenient bool) (Span, error) {
	if err := d.c.event(payload, !lenient, true); err != nil {
		return Span{}, err
	}
	sp := &d.c.spans
	return Span{Raw: payload, IsObject: true, Type: d.raw(sp[sType]), AnonymousID: d.raw(sp[sAnonymousID]),
		UserID: d.raw(sp[sUserID]), MessageID: d.raw(sp[sMessageID]), Context: d.raw(sp[sContext]),
		SentAt: d.raw(sp[sSentAt])}, nil
}

// scanAt is Scan for the object at b[i] of a body, nested depth deep there: b stays the input (spans and the
// byte offsets of errors count from its start). It returns the event's span and the index after it.
func (d *Deriver) scanAt(b []byte, i, depth int) (Span, int, error) {
	end, err := d.c.eventAt(b, i, depth, true, true)
	if err != nil {
		return Span{}, end, err
	}
	sp := &d.c.spans
	return Span{Raw: b[i:end], IsObject: true, Type: d.raw(sp[sType]), AnonymousID: d.raw(sp[sAnonymousID]),
		UserID: d.raw(sp[sUserID]), MessageID: d.raw(sp[sMessageID]), Context: d.raw(sp[sContext]),
		SentAt: d.raw(sp[sSentAt])}, end, nil
}

// Finish derives the fields of the event the last Scan read into f (overwritten). It fails, unless
// in.Lenient, with ErrInvalidEvent when the event breaks Segment's rules (see Derive).
func (d *Deriver) Finish(in Input, f *schemas.EventFields) error {
	*f = schemas.EventFields{Contract: Version}
	d.strs, d.pend = d.strs[:0], d.pend[:0]
	sp := &d.c.spans

	sum := sha256.Sum256(d.c.out)
	s0 := len(d.strs)
	d.strs = hex.AppendEncode(d.strs, sum[:])
	d.set(&f.SignalID, ref{int32(s0), int32(len(d.strs)), inStrs})

	segment := in.Source == schemas.SourceSegment
	switch {
	case !segment:
		f.Type = "webhook"
	default:
		r := d.text(sType)
		if known := knownType(d.bytes(r)); known != "" && d.c.in[sp[sType].start] == '"' {
			f.Type = known
		} else if !in.Lenient {
			return fmt.Errorf("%w: %s", ErrInvalidEvent, TypeReason)
		} else {
			r = d.own(r)
			lower(d.bytes(r))
			d.set(&f.Type, r)
		}
	}

	var ids [3]ref
	for i, id := range [...]struct {
		dst  *string
		slot int
		name string
	}{{&f.AnonymousID, sAnonymousID, "anonymousId"}, {&f.UserID, sUserID, "userId"}, {&f.MessageID, sMessageID, "messageId"}} {
		r, ok := d.idText(id.slot)
		if !ok && !in.Lenient {
			return fmt.Errorf("%w: %s must be a string", ErrInvalidEvent, id.name)
		}
		d.set(id.dst, r)
		ids[i] = r
	}
	if segment && ids[0].empty() && ids[1].empty() && !in.Lenient {
		return fmt.Errorf("%w: userId or anonymousId is required", ErrInvalidEvent)
	}
	if r, ok := d.idText(sGroupID); ok && !r.empty() {
		d.set(&f.GroupID, r)
	} else if r, ok := d.idText(sCtxGroupID); ok {
		d.set(&f.GroupID, r)
	}
	if r, ok := d.idText(sPreviousID); ok {
		d.set(&f.PreviousID, r)
	}

	group := f.Type == "group"
	page := f.Type == "page" || f.Type == "screen"
	if !group {
		// A group call's traits describe the group, never a person: it names no lead.
		for _, slot := range [...]int{sTraitsEmail, sCtxTraitsEmail, sPropEmail, sEmail} {
			r := d.text(slot)
			if r.empty() {
				continue
			}
			r = d.own(r) // normalized in place
			b := d.bytes(r)
			if email := normalizeEmail(b); email != nil {
				es := r.s + int32(cap(b)-cap(email)) // the trimmed address inside r
				d.set(&f.Email, ref{es, es + int32(len(email)), inStrs})
				break
			}
			d.strs = d.strs[:r.s]
		}
	}
	url := d.text(sPropURL)
	if url.empty() {
		url = d.text(sPageURL)
	}
	d.set(&f.URL, url)
	var pageName ref
	if page {
		if pageName = d.text(sPropName); pageName.empty() {
			pageName = d.text(sName)
		}
		d.set(&f.PageName, pageName)
	}

	props, traits := d.c.rootProps, d.c.rootTraits
	if d.isObject(sp[sProperties]) {
		d.setOut(&f.Properties, props.start, props.end)
	} else {
		f.Properties = "{}"
	}
	switch {
	case d.isObject(sp[sTraits]):
		d.setOut(&f.Traits, traits.start, traits.end)
	case !group && d.isObject(sp[sContext]) && d.isObject(sp[sCtxTraits]):
		ctx := d.c.out[d.c.rootContext.start:d.c.rootContext.end]
		t := canonicalMember(ctx, "traits")
		at := d.c.rootContext.start + int32(cap(ctx)-cap(t))
		d.setOut(&f.Traits, at, at+int32(len(t)))
	default:
		f.Traits = "{}"
	}

	t := EventTimes(d.bytes(d.text(sTimestamp)), d.bytes(d.text(sOriginalTimestamp)),
		d.bytes(d.text(sSentAt)), d.bytes(d.text(sReceivedAt)), in.ReceivedAt)
	f.EventTimeMs, f.OriginalTimestampMs, f.SentAtMs = t.EventMs, t.OriginalMs, t.SentAtMs

	x := &f.EventContext
	d.putText(&x.UTMSource, sUTMSource)
	d.putText(&x.UTMMedium, sUTMMedium)
	d.putText(&x.UTMCampaign, sUTMCampaign)
	d.putText(&x.UTMTerm, sUTMTerm)
	d.putText(&x.UTMContent, sUTMContent)
	for _, pf := range [...]struct {
		dst        *string
		prop, page int
	}{{&x.Referrer, sPropReferrer, sPageReferrer}, {&x.PagePath, sPropPath, sPagePath},
		{&x.PageTitle, sPropTitle, sPageTitle}, {&x.PageSearch, sPropSearch, sPageSearch}} {
		if !page || !d.putText(pf.dst, pf.prop) {
			d.putText(pf.dst, pf.page)
		}
	}
	d.putText(&x.UserAgent, sCtxUserAgent)
	d.putText(&x.IP, sCtxIP)
	d.putText(&x.Locale, sCtxLocale)
	d.putText(&x.Timezone, sCtxTimezone)
	d.putText(&x.LibraryName, sLibName)
	d.putText(&x.LibraryVersion, sLibVersion)

	var name ref
	switch {
	case !segment:
		if name = d.text(sEvent); name.empty() {
			f.Event = "webhook"
		}
	case f.Type == "track":
		name = d.text(sEvent)
	case page && !pageName.empty():
		name = pageName
	case page:
		// url and properties.path may alias the buffer: take their bytes after any growth, copying from them
		// into the buffer's tail (appendURLPath appends only).
		path := d.text(sPropPath)
		s := len(d.strs)
		d.strs = appendURLPath(d.strs, d.bytes(url), d.bytes(path))
		name = ref{int32(s), int32(len(d.strs)), inStrs}
	default:
		f.Event = f.Type
	}
	if !name.empty() {
		d.set(&f.Event, name)
	}
	d.flush()

	if kind, id, ok := Visitor(f.AnonymousID, f.UserID); ok {
		f.VisitorKind, f.VisitorID = kind, id
	}
	return nil
}

// setOut sets *dst to the canonical output bytes [s, e).
func (d *Deriver) setOut(dst *string, s, e int32) { d.set(dst, ref{s, e, inOut}) }

// flush makes the strings. Unsafe: each aliases its bytes (the buffer, the input or the output), no copy.
// Otherwise every ref is first copied into the buffer, which becomes one string: one allocation per event.
func (d *Deriver) flush() {
	if d.Unsafe {
		for _, p := range d.pend {
			if b := d.bytes(p.r); len(b) > 0 {
				*p.dst = unsafe.String(&b[0], len(b))
			}
		}
		return
	}
	for i := range d.pend {
		d.pend[i].r = d.own(d.pend[i].r)
	}
	if len(d.strs) == 0 {
		return
	}
	all := string(d.strs)
	for _, p := range d.pend {
		*p.dst = all[p.r.s:p.r.e]
	}
}

func knownType(t []byte) string {
	for _, s := range SegmentTypes {
		if string(t) == s {
			return s
		}
	}
	return ""
}

func lower(b []byte) []byte {
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// canonicalMember returns the value of member name of the canonical object obj (nil when absent). The
// canonical form has no whitespace and plain names, so the scanner walks it directly.
func canonicalMember(obj []byte, name string) []byte {
	for key, val, i, ok := nextMember(obj, 1); ok; key, val, i, ok = nextMember(obj, i) {
		if string(key) == name {
			return val
		}
	}
	return nil
}
