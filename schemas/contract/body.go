package contract

import (
	"errors"
	"fmt"
)

// ErrTooManyEvents stops the scan of a body with more events than the caller takes in one request.
var ErrTooManyEvents = errors.New("too many events in one request")

// ErrBadBody means a request body is not JSON, or is JSON of a shape the contract does not accept (anything but
// an object, an array of events, or {"batch":[...]}).
var ErrBadBody = errors.New("bad request body")

// Span is one element of a request body, as spans into the body: nothing is copied or decoded.
type Span struct {
	Raw      []byte // the element's bytes as sent
	IsObject bool
	// Raw JSON values of the root members the edge reads (strings keep their quotes); nil when absent. A later
	// duplicate wins here; the canonical form refuses duplicates anyway.
	Type, AnonymousID, UserID, MessageID, Context, SentAt []byte
}

// Envelope is the rest of a {"batch":[...]} body: Segment's batch-level members, as raw JSON values (nil when
// absent). Context and Integrations are merged into each event (SplitBody's caller does it with AppendEvent);
// SentAt is the client's send time of the whole batch, which the clock-skew correction needs for each event.
// MessageID names the batch request, not an event: it is not given to the events. For a single event object,
// only WriteKey is set (the event's own writeKey member).
type Envelope struct {
	Context, SentAt, MessageID, Integrations, WriteKey []byte
}

// Body is a request body split into events.
type Body struct {
	Events []Span
	// Envelope holds the members of a {"batch":[...]} body besides batch; Context only when it is an object,
	// SentAt only when it is a string.
	Envelope Envelope
	// Multi is false when the body was a single event object.
	Multi bool
	// MaxEvents bounds len(Events); the scan stops with ErrTooManyEvents beyond it (0: no bound).
	MaxEvents int
	// Each, with Deriver, makes SplitBody read every element of a body that is an array as it reaches it, the
	// objects with Deriver.Scan, and call Each with it in order, instead of skipping the objects for a later
	// Scan: the body is read once. The Deriver holds what Scan read until Each returns; scanErr is Scan's error
	// (the element's span then has only what the splitter itself reads). An error from Each stops the split and
	// is returned as it is. A single event or a batch (whose envelope may follow its events) never calls Each.
	Each    func(i int, e *Span, scanErr error) error
	Deriver *Deriver
}

// SplitBody splits b into events, reusing the backing array of out.Events. The three accepted shapes are one
// event object, an array of events, and an object with a "batch" array (its other members are the envelope).
// It validates the body's structure (nesting up to MaxDepth from the body's root, the array, the envelope, a
// single event whole, the root members of each event) but not the objects and arrays inside the events of an
// array or batch, which it only skips: the canonicalizer that reads each event (Deriver.Scan) validates them, so
// the body is read about once. Elements that are not objects are returned too (IsObject false): the caller
// refuses them one by one, as it refuses an event whose syntax or content Scan and Derive refuse.
func SplitBody(b []byte, out *Body) error {
	out.Events, out.Envelope, out.Multi = out.Events[:0], Envelope{}, false
	i := skipWS(b, 0)
	if i >= len(b) {
		return fmt.Errorf("%w: empty body, expected a JSON object or array", ErrBadBody)
	}
	var err error
	switch b[i] {
	case '[':
		out.Multi = true
		i, err = scanEvents(b, i, 0, out, out.Each != nil && out.Deriver != nil)
	case '{':
		var top Span
		var env Envelope
		var batchSeen bool
		start := i
		i, err = scanObject(b, i, 0, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
			k := memberName(key, kesc)
			if k == keyBatch && vstart < len(b) && b[vstart] == '[' {
				// The events are inspected while the batch is validated: one pass over the body.
				batchSeen = true
				out.Events = out.Events[:0]
				return scanEvents(b, vstart, depth, out, false)
			}
			vend, err := scanValue(b, vstart, depth)
			if err == nil {
				v := b[vstart:vend]
				top.record(k, v)
				switch k {
				case keyContext:
					env.Context = v
				case keySentAt:
					env.SentAt = v
				case keyMessage:
					env.MessageID = v
				case keyIntegrations:
					env.Integrations = v
				case keyWriteKey:
					env.WriteKey = v
				}
			}
			return vend, err
		})
		if err == nil {
			if batchSeen {
				out.Multi = true
				if len(env.Context) > 0 && env.Context[0] != '{' {
					env.Context = nil
				}
				if len(env.SentAt) > 0 && env.SentAt[0] != '"' {
					env.SentAt = nil
				}
				if len(env.Integrations) > 0 && env.Integrations[0] != '{' {
					env.Integrations = nil
				}
				out.Envelope = env
			} else {
				top.Raw, top.IsObject = b[start:i], true
				out.Events = append(out.Events, top)
				// A single event's writeKey (analytics.js sends it in the body) names its key too.
				out.Envelope.WriteKey = env.WriteKey
			}
		}
	default:
		if _, err := scanValue(b, i, 0); err != nil {
			return fmt.Errorf("%w: %w", ErrBadBody, err)
		}
		return fmt.Errorf("%w: expected a JSON object, an array of events, or {\"batch\":[...]}", ErrBadBody)
	}
	var ee *eachError
	if errors.As(err, &ee) {
		return ee.err
	}
	if errors.Is(err, ErrTooManyEvents) {
		return fmt.Errorf("%w: more than %d", ErrTooManyEvents, out.MaxEvents)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	if i = skipWS(b, i); i != len(b) {
		return fmt.Errorf("%w: %w", ErrBadBody, syntaxErr(b, i, "unexpected data after the JSON value"))
	}
	return nil
}

// eachError carries Body.Each's error out of the split unchanged.
type eachError struct{ err error }

func (e *eachError) Error() string { return e.err.Error() }

// Names of the members the splitter reads.
const (
	keyType         = "type"
	keyAnonymous    = "anonymousId"
	keyUser         = "userId"
	keyMessage      = "messageId"
	keyContext      = "context"
	keySentAt       = "sentAt"
	keyBatch        = "batch"
	keyIntegrations = "integrations"
	keyWriteKey     = "writeKey"
)

// scanEvents validates the array at b[i] == '[' and appends each element to out.Events (see skipEvent), or,
// when each, reads it with out.Deriver and hands it to out.Each.
func scanEvents(b []byte, i, depth int, out *Body, each bool) (int, error) {
	if depth >= MaxDepth {
		return i, syntaxErr(b, i, "nesting too deep")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if out.MaxEvents > 0 && len(out.Events) >= out.MaxEvents {
			return i, ErrTooManyEvents
		}
		start := i
		var err, scanErr error
		out.Events = append(out.Events, Span{})
		e := &out.Events[len(out.Events)-1]
		if each && i < len(b) && b[i] == '{' {
			var sp Span
			var end int
			if sp, end, scanErr = out.Deriver.scanAt(b, i, depth+1); scanErr == nil {
				*e, i = sp, end
			} else if i, err = skipEvent(b, start, depth+1, e); err != nil {
				return i, err // not even its structure holds: the body is refused
			}
		} else if i, err = skipEvent(b, i, depth+1, e); err != nil {
			return i, err
		}
		e.Raw = b[start:i]
		if each {
			if err := out.Each(len(out.Events)-1, e, scanErr); err != nil {
				return i, &eachError{err}
			}
		}
		var done bool
		if i, done, err = afterMember(b, i, ']'); done || err != nil {
			return i, err
		}
	}
}

// skipEvent returns the end of the element at b[i] of an array of events (see scanEvents). Of an object it
// reads the root members (recording those the edge reads) and skips the objects and arrays in their values.
func skipEvent(b []byte, i, depth int, e *Span) (int, error) {
	if i >= len(b) || (b[i] != '{' && b[i] != '[') {
		return scanValue(b, i, depth)
	}
	if b[i] == '[' {
		return skipComposite(b, i, depth)
	}
	e.IsObject = true
	return scanObject(b, i, depth, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
		var vend int
		var err error
		if vstart < len(b) && (b[vstart] == '{' || b[vstart] == '[') {
			vend, err = skipComposite(b, vstart, depth)
		} else {
			vend, err = scanValue(b, vstart, depth)
		}
		if err == nil {
			e.record(memberName(key, kesc), b[vstart:vend])
		}
		return vend, err
	})
}

// scanEvent validates the value at b[i] and, when it is an object, records the members the edge reads into e.
func scanEvent(b []byte, i, depth int, e *Span) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return scanValue(b, i, depth)
	}
	e.IsObject = true
	return scanObject(b, i, depth, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
		vend, err := scanValue(b, vstart, depth)
		if err == nil {
			e.record(memberName(key, kesc), b[vstart:vend])
		}
		return vend, err
	})
}

// Inspect splits one element the way SplitBody does (for tests and callers that hold a single event).
func Inspect(val []byte) Span {
	e := Span{Raw: val}
	_, _ = scanEvent(val, 0, 0, &e)
	return e
}

// record keeps val when name is one the edge reads.
func (e *Span) record(name string, val []byte) {
	switch name {
	case keyType:
		e.Type = val
	case keyAnonymous:
		e.AnonymousID = val
	case keyUser:
		e.UserID = val
	case keyMessage:
		e.MessageID = val
	case keyContext:
		e.Context = val
	case keySentAt:
		e.SentAt = val
	}
}

// memberName returns the key as a string for the switches above; the conversion in a switch on string(key) does
// not allocate, so only escaped keys (rare) pay for decoding.
func memberName(key []byte, escaped bool) string {
	if !escaped {
		switch string(key) {
		case keyType:
			return keyType
		case keyAnonymous:
			return keyAnonymous
		case keyUser:
			return keyUser
		case keyMessage:
			return keyMessage
		case keyContext:
			return keyContext
		case keySentAt:
			return keySentAt
		case keyBatch:
			return keyBatch
		case keyIntegrations:
			return keyIntegrations
		case keyWriteKey:
			return keyWriteKey
		}
		return ""
	}
	s, _ := appendDecoded(nil, key)
	return string(s)
}

// IDText returns the text of an id member's raw value: a string's contents (escapes decoded) or a number's
// literal. ok is false for other JSON types; absent and null ids are empty. The result may alias v.
func IDText(v []byte) (id []byte, ok bool) {
	switch {
	case len(v) == 0 || string(v) == "null":
		return nil, true
	case v[0] == '"':
		inner := v[1 : len(v)-1]
		for _, c := range inner {
			if c == '\\' {
				s, _ := appendDecoded(nil, inner)
				return s, true
			}
		}
		return inner, true
	case v[0] == '-' || isDigit(v[0]):
		return v, true
	default:
		return nil, false
	}
}
