package processor

import (
	"fmt"
	"strings"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// Event is one raw event as the processor sees it: the record with the fields the edge derived by the event
// contract (schemas/contract). A record written before the contract (raw_event.v1, Contract 0) gets the same
// fields derived here, by the same function, from its payload. The processor never parses a payload otherwise:
// a mapping rule that looks into one asks the contract (Field). An Event is only valid during the call it is
// passed to (the core reuses it).
type Event struct {
	schemas.RawEvent
	// EventTime is EventFields.EventTimeMs as a time.
	EventTime time.Time
	// legacy marks a raw_event.v1 record: the processor before the contract gave its signal the legacy id.
	legacy bool
	idBuf  [2]visitor // backs ids
}

// Name is the event name (EventFields.Event): the signal queue's grouping and the rules' event.
func (e *Event) Name() string { return e.EventFields.Event }

// Field returns the value at a dot-separated path of the payload (properties.form_name, context.page.url), as
// text: strings decoded, numbers and booleans as written, objects and arrays in canonical form. ok is false when
// the path does not exist or holds null.
func (e *Event) Field(path string) (string, bool) {
	return contract.Lookup(e.Payload, strings.Split(path, "."))
}

// FieldSegments is Field with the path already split at the dots (the rules engine's form); segs is neither kept
// nor modified.
func (e *Event) FieldSegments(segs []string) (string, bool) { return contract.Lookup(e.Payload, segs) }

// LegalID reports whether id can identify a visitor: it is not one of the contract's placeholders.
func LegalID(id string) bool { return !contract.IsPlaceholder(id) }

// visitor is an id the processor keeps state under: its kind (schemas.IDKindAnonymous or IDKindUser) and id.
type visitor struct {
	kind string
	id   string
}

// visitor returns the id the event's signals are held under: the contract's visitor, the one the edge routed by.
func (e *Event) visitor() (visitor, bool) {
	if e.VisitorID == "" {
		return visitor{}, false
	}
	return visitor{e.VisitorKind, e.VisitorID}, true
}

// ids returns the legal visitor ids of the event, the visitor's first.
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

// eventReader turns records into Events; it keeps the contract's buffers for records that need deriving.
type eventReader struct {
	d  contract.Deriver
	ev Event
}

// read returns the Event of raw (which it keeps pointers into). A record without derived fields is derived
// here, leniently: what the edge accepted before the contract is never refused for its shape. A payload that is
// not one JSON object (not from an edge of ours) is ErrPoison.
func (r *eventReader) read(raw *schemas.RawEvent) (*Event, error) {
	e := &r.ev
	*e = Event{RawEvent: *raw}
	if raw.Contract == 0 {
		e.legacy = true
		source := raw.Source
		if source != schemas.SourceSegment && source != schemas.SourceWebhook {
			source = inferSource(raw.Payload)
			e.Source = source
		}
		in := contract.Input{Source: source, ReceivedAt: raw.ReceivedAt, Lenient: true}
		if err := r.d.Derive(raw.Payload, in, &e.EventFields); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrPoison, err)
		}
	}
	e.EventTime = time.UnixMilli(e.EventTimeMs).UTC()
	return e, nil
}

// inferSource is the source of a record without one (written by hand, not by an edge): segment when it has a
// type and an id, as the processor before the contract decided.
func inferSource(payload []byte) string {
	s := contract.Inspect(payload)
	if s.Type != nil && (s.AnonymousID != nil || s.UserID != nil || s.MessageID != nil) {
		return schemas.SourceSegment
	}
	return schemas.SourceWebhook
}

// ids of a signal for dedup: the id it is emitted under, and the other one it may have been emitted under
// before the upgrade to the contract (see dedupIDs).
func (e *Event) legacyID() string {
	id, ok := contract.LegacySignalID(e.Payload)
	if !ok {
		return ""
	}
	return id
}
