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

type pending struct {
	dst        *string
	start, end int
}

// put appends b to the string buffer as the future value of *dst.
func (d *Deriver) put(dst *string, b []byte) {
	s := len(d.strs)
	d.strs = append(d.strs, b...)
	d.pend = append(d.pend, pending{dst, s, len(d.strs)})
}

// text appends the text of the value at sp (strings decoded; numbers and booleans as written; "" otherwise)
// and returns its bounds in the buffer.
func (d *Deriver) text(sp span) (start, end int) {
	start = len(d.strs)
	if sp.end == 0 {
		return start, start
	}
	v := d.c.in[sp.start:sp.end]
	switch c := v[0]; {
	case c == '"':
		d.strs, _ = appendDecoded(d.strs, v[1:len(v)-1])
	case c == '-' || isDigit(c) || c == 't' || c == 'f':
		d.strs = append(d.strs, v...)
	}
	return start, len(d.strs)
}

// putText sets *dst to the text of the value at sp and reports whether it is non-empty.
func (d *Deriver) putText(dst *string, sp span) bool {
	s, e := d.text(sp)
	d.pend = append(d.pend, pending{dst, s, e})
	return e > s
}

// idText is the text of an id member: a string's contents or a number's literal; ok is false for other types
// (absent and null are "" and ok).
func (d *Deriver) idText(sp span) (start, end int, ok bool) {
	start = len(d.strs)
	if sp.end == 0 {
		return start, start, true
	}
	switch c := d.c.in[sp.start]; {
	case c == '"' || c == '-' || isDigit(c):
		s, e := d.text(sp)
		return s, e, true
	case c == 'n':
		return start, start, true
	}
	return start, start, false
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
// with ErrInvalidEvent and the reason when the contract refuses the event. f is overwritten.
func (d *Deriver) Derive(payload []byte, in Input, f *schemas.EventFields) error {
	if err := d.c.event(payload, !in.Lenient, true); err != nil {
		return err
	}
	*f = schemas.EventFields{Contract: Version}
	d.strs, d.pend = d.strs[:0], d.pend[:0]
	sp := &d.c.spans

	sum := sha256.Sum256(d.c.out)
	var hexID [2 * sha256.Size]byte
	hex.Encode(hexID[:], sum[:])
	d.put(&f.SignalID, hexID[:])

	segment := in.Source == schemas.SourceSegment
	switch {
	case !segment:
		f.Type = "webhook"
	default:
		s, e := d.text(sp[sType])
		if known := knownType(d.strs[s:e]); known != "" && d.c.in[sp[sType].start] == '"' {
			f.Type = known
			d.strs = d.strs[:s]
		} else if !in.Lenient {
			return fmt.Errorf("%w: %s", ErrInvalidEvent, TypeReason)
		} else {
			lower(d.strs[s:e])
			d.pend = append(d.pend, pending{&f.Type, s, e})
		}
	}

	var idBounds [3][2]int
	for i, id := range [...]struct {
		dst  *string
		slot int
		name string
	}{{&f.AnonymousID, sAnonymousID, "anonymousId"}, {&f.UserID, sUserID, "userId"}, {&f.MessageID, sMessageID, "messageId"}} {
		s, e, ok := d.idText(sp[id.slot])
		if !ok && !in.Lenient {
			return fmt.Errorf("%w: %s must be a string", ErrInvalidEvent, id.name)
		}
		d.pend = append(d.pend, pending{id.dst, s, e})
		idBounds[i] = [2]int{s, e}
	}
	if segment && idBounds[0][1] == idBounds[0][0] && idBounds[1][1] == idBounds[1][0] && !in.Lenient {
		return fmt.Errorf("%w: userId or anonymousId is required", ErrInvalidEvent)
	}
	if s, e, ok := d.idText(sp[sGroupID]); ok && e > s {
		d.pend = append(d.pend, pending{&f.GroupID, s, e})
	} else if s, e, ok := d.idText(sp[sCtxGroupID]); ok {
		d.pend = append(d.pend, pending{&f.GroupID, s, e})
	}
	if s, e, ok := d.idText(sp[sPreviousID]); ok {
		d.pend = append(d.pend, pending{&f.PreviousID, s, e})
	}

	group := f.Type == "group"
	page := f.Type == "page" || f.Type == "screen"
	if !group {
		// A group call's traits describe the group, never a person: it names no lead.
		for _, slot := range [...]int{sTraitsEmail, sCtxTraitsEmail, sPropEmail, sEmail} {
			s, e := d.text(sp[slot])
			if email := normalizeEmail(d.strs[s:e]); email != nil {
				es := s + (cap(d.strs[s:e]) - cap(email)) // the trimmed address inside [s, e)
				d.pend = append(d.pend, pending{&f.Email, es, es + len(email)})
				break
			}
			d.strs = d.strs[:s]
		}
	}
	urlS, urlE := d.text(sp[sPropURL])
	if urlE == urlS {
		urlS, urlE = d.text(sp[sPageURL])
	}
	d.pend = append(d.pend, pending{&f.URL, urlS, urlE})
	var pnS, pnE int
	if page {
		if pnS, pnE = d.text(sp[sPropName]); pnE == pnS {
			pnS, pnE = d.text(sp[sName])
		}
		d.pend = append(d.pend, pending{&f.PageName, pnS, pnE})
	}

	props, traits := d.c.rootProps, d.c.rootTraits
	if d.isObject(sp[sProperties]) {
		d.put(&f.Properties, d.c.out[props.start:props.end])
	} else {
		f.Properties = "{}"
	}
	switch {
	case d.isObject(sp[sTraits]):
		d.put(&f.Traits, d.c.out[traits.start:traits.end])
	case !group && d.isObject(sp[sContext]) && d.isObject(sp[sCtxTraits]):
		d.put(&f.Traits, canonicalMember(d.c.out[d.c.rootContext.start:d.c.rootContext.end], "traits"))
	default:
		f.Traits = "{}"
	}

	t := EventTimes(d.textBytes(sp[sTimestamp]), d.textBytes(sp[sOriginalTimestamp]), d.textBytes(sp[sSentAt]),
		d.textBytes(sp[sReceivedAt]), in.ReceivedAt)
	f.EventTimeMs, f.OriginalTimestampMs, f.SentAtMs = t.EventMs, t.OriginalMs, t.SentAtMs

	x := &f.EventContext
	d.putText(&x.UTMSource, sp[sUTMSource])
	d.putText(&x.UTMMedium, sp[sUTMMedium])
	d.putText(&x.UTMCampaign, sp[sUTMCampaign])
	d.putText(&x.UTMTerm, sp[sUTMTerm])
	d.putText(&x.UTMContent, sp[sUTMContent])
	for _, pf := range [...]struct {
		dst        *string
		prop, page int
	}{{&x.Referrer, sPropReferrer, sPageReferrer}, {&x.PagePath, sPropPath, sPagePath},
		{&x.PageTitle, sPropTitle, sPageTitle}, {&x.PageSearch, sPropSearch, sPageSearch}} {
		if !page || !d.putText(pf.dst, sp[pf.prop]) {
			d.putText(pf.dst, sp[pf.page])
		}
	}
	d.putText(&x.UserAgent, sp[sCtxUserAgent])
	d.putText(&x.IP, sp[sCtxIP])
	d.putText(&x.Locale, sp[sCtxLocale])
	d.putText(&x.Timezone, sp[sCtxTimezone])
	d.putText(&x.LibraryName, sp[sLibName])
	d.putText(&x.LibraryVersion, sp[sLibVersion])

	// The name needs the texts above, so it is derived from the buffer before the strings are made.
	var nameS, nameE int
	switch {
	case !segment:
		nameS, nameE = d.text(sp[sEvent])
		if nameE == nameS {
			d.strs = append(d.strs, "webhook"...)
			nameE = len(d.strs)
		}
	case f.Type == "track":
		nameS, nameE = d.text(sp[sEvent])
	case page && pnE > pnS:
		nameS, nameE = pnS, pnE
	case page:
		pS, pE := d.text(sp[sPropPath])
		nameS = len(d.strs)
		d.strs = appendURLPath(d.strs, d.strs[urlS:urlE], d.strs[pS:pE])
		nameE = len(d.strs)
	default:
		f.Event = f.Type
	}
	if nameE > nameS {
		d.pend = append(d.pend, pending{&f.Event, nameS, nameE})
	}
	d.flush()

	if kind, id, ok := Visitor(f.AnonymousID, f.UserID); ok {
		f.VisitorKind, f.VisitorID = kind, id
	}
	return nil
}

// textBytes is the decoded text of the value at sp, appended to the buffer (nil when empty).
func (d *Deriver) textBytes(sp span) []byte {
	s, e := d.text(sp)
	if e == s {
		return nil
	}
	return d.strs[s:e]
}

// flush makes the strings: one conversion of the buffer (or none when Unsafe), every field a substring of it.
func (d *Deriver) flush() {
	if len(d.strs) == 0 {
		return
	}
	var all string
	if d.Unsafe {
		all = unsafe.String(&d.strs[0], len(d.strs))
	} else {
		all = string(d.strs)
	}
	for _, p := range d.pend {
		*p.dst = all[p.start:p.end]
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
