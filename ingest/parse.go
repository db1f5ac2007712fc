package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
)

// errTooManyEvents stops the scan of a body with more events than the edge takes in one request.
var errTooManyEvents = errors.New("too many events in one request")

// ErrBadBody means the request body is not JSON, or is JSON of a shape the edge does not accept (anything but an
// object, an array of events, or {"batch":[...]}). The handler answers 400 with the error's message.
var ErrBadBody = errors.New("bad request body")

// event is one element of a request body, as spans into the body: nothing is copied or decoded.
type event struct {
	raw      []byte // the element's bytes as sent
	isObject bool
	// Raw JSON values of the members the edge reads (string values keep their quotes); nil when absent.
	typ, anon, user, msg, ctx []byte
}

// parsed is a request body split into events.
type parsed struct {
	events []event
	// batchCtx is the top-level "context" of a {"batch":[...]} body, merged into each event (nil if none).
	batchCtx []byte
	// multi is false when the body was a single event object.
	multi bool
	// maxEvents bounds len(events); the scan stops with errTooManyEvents beyond it (0: no bound).
	maxEvents int
}

// Names of the members the edge reads.
const (
	keyType      = "type"
	keyAnonymous = "anonymousId"
	keyUser      = "userId"
	keyMessage   = "messageId"
	keyContext   = "context"
	keyBatch     = "batch"
)

// parseBody validates b as JSON and splits it into events, reusing p.events' backing array. The three accepted
// shapes are one event object, an array of events, and an object with a "batch" array (plus optional "context").
func parseBody(b []byte, p *parsed) error {
	p.events, p.batchCtx, p.multi = p.events[:0], nil, false
	i := skipWS(b, 0)
	if i >= len(b) {
		return fmt.Errorf("%w: empty body, expected a JSON object or array", ErrBadBody)
	}
	var err error
	switch b[i] {
	case '[':
		p.multi = true
		i, err = scanEvents(b, i, 0, p)
	case '{':
		var top event
		var batchSeen bool
		start := i
		i, err = scanObject(b, i, 0, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
			k := memberName(key, kesc)
			if k == keyBatch && vstart < len(b) && b[vstart] == '[' {
				// The events are inspected while the batch is validated: one pass over the body.
				batchSeen = true
				p.events = p.events[:0]
				return scanEvents(b, vstart, depth, p)
			}
			vend, err := scanValue(b, vstart, depth)
			if err == nil {
				top.record(k, b[vstart:vend])
			}
			return vend, err
		})
		if err == nil {
			if batchSeen {
				p.multi = true
				if len(top.ctx) > 0 && top.ctx[0] == '{' {
					p.batchCtx = top.ctx
				}
			} else {
				top.raw, top.isObject = b[start:i], true
				p.events = append(p.events, top)
			}
		}
	default:
		if _, err := scanValue(b, i, 0); err != nil {
			return fmt.Errorf("%w: %w", ErrBadBody, err)
		}
		return fmt.Errorf("%w: expected a JSON object, an array of events, or {\"batch\":[...]}", ErrBadBody)
	}
	if errors.Is(err, errTooManyEvents) {
		return fmt.Errorf("%w: more than %d", errTooManyEvents, p.maxEvents)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	if i = skipWS(b, i); i != len(b) {
		return fmt.Errorf("%w: %w", ErrBadBody, syntaxErr(b, i, "unexpected data after the JSON value"))
	}
	return nil
}

// scanEvents validates the array at b[i] == '[' and appends each element to p.events, recording the members of
// object elements in the same pass.
func scanEvents(b []byte, i, depth int, p *parsed) (int, error) {
	if depth >= maxDepth {
		return i, syntaxErr(b, i, "nesting too deep")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if p.maxEvents > 0 && len(p.events) >= p.maxEvents {
			return i, errTooManyEvents
		}
		start := i
		var err error
		p.events = append(p.events, event{})
		if i, err = scanEvent(b, i, depth+1, &p.events[len(p.events)-1]); err != nil {
			return i, err
		}
		p.events[len(p.events)-1].raw = b[start:i]
		var done bool
		if i, done, err = afterMember(b, i, ']'); done || err != nil {
			return i, err
		}
	}
}

// scanEvent validates the value at b[i] and, when it is an object, records the members the edge reads into e.
func scanEvent(b []byte, i, depth int, e *event) (int, error) {
	if i >= len(b) || b[i] != '{' {
		return scanValue(b, i, depth)
	}
	e.isObject = true
	return scanObject(b, i, depth, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
		vend, err := scanValue(b, vstart, depth)
		if err == nil {
			e.record(memberName(key, kesc), b[vstart:vend])
		}
		return vend, err
	})
}

// inspect records the members the edge reads of one element (tests use it).
func inspect(val []byte) event {
	e := event{raw: val}
	_, _ = scanEvent(val, 0, 0, &e)
	return e
}

// record keeps val when name is one the edge reads. A later duplicate wins, as in encoding/json.
func (e *event) record(name string, val []byte) {
	switch name {
	case keyType:
		e.typ = val
	case keyAnonymous:
		e.anon = val
	case keyUser:
		e.user = val
	case keyMessage:
		e.msg = val
	case keyContext:
		e.ctx = val
	}
}

// memberName returns the key as a string for the switch in record; the conversion in a switch on string(key)
// does not allocate, so only escaped keys (rare) pay for decoding.
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
		case keyBatch:
			return keyBatch
		}
		return ""
	}
	quoted := make([]byte, 0, len(key)+2)
	quoted = append(append(append(quoted, '"'), key...), '"')
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return ""
	}
	return s
}

// idValue returns the text of an id member: a string's contents or a number's literal. ok is false for other
// JSON types. Absent and null ids are empty. The result may alias the body.
func idValue(v []byte) (id []byte, ok bool) {
	switch {
	case len(v) == 0 || string(v) == "null":
		return nil, true
	case v[0] == '"':
		inner := v[1 : len(v)-1]
		for _, c := range inner {
			if c == '\\' {
				var s string
				if json.Unmarshal(v, &s) != nil {
					return nil, false
				}
				return []byte(s), true
			}
		}
		return inner, true
	case v[0] == '-' || isDigit(v[0]):
		return v, true
	default:
		return nil, false
	}
}
