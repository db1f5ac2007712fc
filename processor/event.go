package processor

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// transportFields are the top-level members a retry may change without changing the event; they are left out of
// the content hash.
var transportFields = []string{"sentAt", "receivedAt"}

// Event is one raw event as the processor understands it: the parsed payload and what Segment semantics derive
// from it. The mapping-rule engine reads it through Field. An Event is only valid during the call it is passed
// to (its tree lives in an arena the next event reuses).
type Event struct {
	Tenant     string
	Source     string // schemas.SourceSegment or schemas.SourceWebhook
	Type       string // Segment call type (track, page, identify, ...) or "webhook"
	Name       string // track: event; page: properties.name, name or the URL path; identify: "identify"
	MessageID  string
	ReceivedAt time.Time
	EventTime  time.Time // timestamp, else originalTimestamp, else ReceivedAt
	// AnonymousID and UserID are as sent; use Visitor for the id the processor holds signals under.
	AnonymousID string
	UserID      string
	// Email is the lower-cased email the event carries (traits.email, context.traits.email, properties.email),
	// "" when none is valid.
	Email      string
	URL        string
	PageName   string
	Properties string // JSON object, canonical
	Traits     string // JSON object, canonical (traits, else context.traits)
	// SignalID is the hex SHA-256 of the canonical payload without transport fields.
	SignalID string
	Payload  []byte

	root  jvalue
	idBuf [2]visitor // backs ids
}

// Field returns the value at a dot-separated path of the payload (properties.form_name, context.page.url), as text:
// strings unescaped, numbers and booleans as written, objects and arrays as canonical JSON. ok is false when the
// path does not exist or holds null.
func (e *Event) Field(path string) (string, bool) {
	return e.FieldSegments(strings.Split(path, "."))
}

// FieldSegments is Field with the path already split at the dots (the rules engine's allocation-free form);
// segs is neither kept nor modified.
func (e *Event) FieldSegments(segs []string) (string, bool) {
	v := e.root.path(segs...)
	if v == nil || v.kind == jNull {
		return "", false
	}
	if v.kind == jObject || v.kind == jArray {
		return string(appendCanonical(nil, v)), true
	}
	return v.text(), true
}

// illegalIDs never identify a visitor: SDK placeholders and common junk.
var illegalIDs = map[string]bool{"": true, "null": true, "undefined": true, "0": true, "anonymous": true, "guest": true,
	"none": true, "nil": true, "unknown": true}

// LegalID reports whether id can identify a visitor.
func LegalID(id string) bool { return !illegalIDs[strings.ToLower(strings.TrimSpace(id))] }

// NormalizeEmail returns the lower-cased, trimmed email, or "" when s does not look like one.
func NormalizeEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n,;<>\"") || strings.Count(s, "@") != 1 {
		return ""
	}
	return s
}

// visitorKey is the identity state key suffix of a visitor id: kind prefix + id.
type visitor struct {
	kind string // schemas.IDKindAnonymous or schemas.IDKindUser
	id   string
}

// Visitor returns the id the processor holds the event's signals under: a legal anonymousId, else a legal userId.
func (e *Event) visitor() (visitor, bool) {
	if LegalID(e.AnonymousID) {
		return visitor{schemas.IDKindAnonymous, e.AnonymousID}, true
	}
	if LegalID(e.UserID) {
		return visitor{schemas.IDKindUser, e.UserID}, true
	}
	return visitor{}, false
}

// ids returns the legal visitor ids of the event.
func (e *Event) ids() []visitor {
	out := e.idBuf[:0]
	if LegalID(e.AnonymousID) {
		out = append(out, visitor{schemas.IDKindAnonymous, e.AnonymousID})
	}
	if LegalID(e.UserID) {
		out = append(out, visitor{schemas.IDKindUser, e.UserID})
	}
	return out
}

// parseEvent parses a RawEvent's payload and derives the event. scratch is reused for the canonical form and
// returned (possibly grown) for the next call.
func parseEvent(raw *schemas.RawEvent, scratch []byte) (*Event, []byte, error) {
	var p jparser
	return p.event(raw, scratch)
}

// event is parseEvent with the parser's arena reused; the Event's tree is valid until the parser's next parse.
func (p *jparser) event(raw *schemas.RawEvent, scratch []byte) (*Event, []byte, error) {
	root, err := p.parseObject(raw.Payload)
	if err != nil {
		return nil, scratch, err
	}
	scratch = appendCanonical(scratch[:0], &root, transportFields...)
	sum := sha256.Sum256(scratch)
	var hexID [2 * sha256.Size]byte
	hex.Encode(hexID[:], sum[:])
	e := &p.ev
	*e = Event{Tenant: raw.Tenant, Source: raw.Source, ReceivedAt: raw.ReceivedAt, Payload: raw.Payload, root: root}
	var f rootFields
	f.collect(&root)
	if e.Source != schemas.SourceSegment && e.Source != schemas.SourceWebhook {
		e.Source = schemas.SourceWebhook
		if f.typ != nil && (f.anonymousID != nil || f.userID != nil || f.messageID != nil) {
			e.Source = schemas.SourceSegment
		}
	}
	props := f.properties
	ctxTraits := f.context.get("traits")
	traits := f.traits
	if traits == nil || traits.kind != jObject {
		traits = ctxTraits
	}
	var email string
	for _, v := range [...]*jvalue{f.traits.get("email"), ctxTraits.get("email"), props.get("email"), f.email} {
		if email = NormalizeEmail(v.transientText()); email != "" {
			break
		}
	}
	e.Type = callType(f.typ)
	var name, pageName *jvalue
	switch {
	case e.Source == schemas.SourceWebhook:
		e.Type, name = "webhook", f.event
	case e.Type == "track":
		name = f.event
	case e.Type == "page" || e.Type == "screen":
		pageName = props.get("name")
		if pageName.transientText() == "" {
			pageName = f.name
		}
	}
	url := props.get("url")
	if url.transientText() == "" {
		url = f.context.path("page", "url")
	}
	// The event's strings are gathered into one buffer and converted once: one allocation instead of one per
	// field. Views into the payload (transientText) are copied here, before the payload can change hands.
	b := append(p.strs[:0], hexID[:]...)
	var ends [9]int
	for i, v := range [...]*jvalue{f.messageID, f.anonymousID, f.userID, url, name, pageName} {
		b = append(b, v.transientText()...)
		ends[i] = len(b)
	}
	b = append(b, email...)
	ends[6] = len(b)
	for i, v := range [...]*jvalue{props, traits} {
		if v == nil || v.kind != jObject {
			b = append(b, "{}"...)
		} else {
			b = appendCanonical(b, v)
		}
		ends[7+i] = len(b)
	}
	p.strs = b
	all := string(b)
	e.SignalID = all[:len(hexID)]
	start := len(hexID)
	for i, dst := range [...]*string{&e.MessageID, &e.AnonymousID, &e.UserID, &e.URL, &e.Name, &e.PageName, &e.Email,
		&e.Properties, &e.Traits} {
		*dst, start = all[start:ends[i]], ends[i]
	}
	e.EventTime = parseTime(f.timestamp, f.originalTimestamp, e.ReceivedAt)
	switch e.Type {
	case "webhook":
		if e.Name == "" {
			e.Name = "webhook"
		}
	case "track":
	case "page", "screen":
		e.Name = e.PageName
		if e.Name == "" {
			e.Name = urlPath(e.URL, props.get("path").text())
		}
	case "identify":
		e.Name = "identify"
	default:
		e.Name = e.Type
	}
	return e, scratch, nil
}

// rootFields are the top-level members the processor reads, found in one pass over the root (the last one wins
// when a key repeats, as with get).
type rootFields struct {
	typ, event, name, anonymousID, userID, messageID, properties, traits, context, timestamp, originalTimestamp, email *jvalue
}

func (f *rootFields) collect(root *jvalue) {
	for i := range root.kids {
		kid := &root.kids[i]
		var k string
		if kid.esc {
			k = unquote(kid.key)
		} else {
			k = string(kid.key[1 : len(kid.key)-1]) // no allocation: only compared in the switch
		}
		switch k {
		case "type":
			f.typ = kid
		case "event":
			f.event = kid
		case "name":
			f.name = kid
		case "anonymousId":
			f.anonymousID = kid
		case "userId":
			f.userID = kid
		case "messageId":
			f.messageID = kid
		case "properties":
			f.properties = kid
		case "traits":
			f.traits = kid
		case "context":
			f.context = kid
		case "timestamp":
			f.timestamp = kid
		case "originalTimestamp":
			f.originalTimestamp = kid
		case "email":
			f.email = kid
		}
	}
}

// knownTypes are the Segment call types, returned as constants so the common case allocates nothing.
var knownTypes = []string{"track", "page", "screen", "identify", "group", "alias"}

// callType returns the lower-cased text of the type member.
func callType(v *jvalue) string {
	if v != nil && v.kind == jString {
		inner := v.raw[1 : len(v.raw)-1]
		for _, t := range knownTypes {
			if string(inner) == t {
				return t
			}
		}
	}
	return strings.ToLower(v.text())
}

func urlPath(u, path string) string {
	if path != "" {
		return path
	}
	if pu, err := url.Parse(u); err == nil && pu.Path != "" {
		return pu.Path
	}
	if u != "" {
		return "/"
	}
	return ""
}

// parseTime returns the first of the JSON timestamps that parses and is plausible (see plausible), else
// receivedAt; always at millisecond precision, as the signal carries it.
func parseTime(timestamp, originalTimestamp *jvalue, receivedAt time.Time) time.Time {
	for _, v := range [...]*jvalue{timestamp, originalTimestamp} {
		if s := v.transientText(); s != "" {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil && plausible(t, receivedAt) {
				return t.UTC().Truncate(time.Millisecond)
			}
		}
	}
	return receivedAt.UTC().Truncate(time.Millisecond)
}
