package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
)

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
		i, err = scanArray(b, i, 0, func(val []byte) error {
			p.events = append(p.events, inspect(val))
			return nil
		})
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
				return scanArray(b, vstart, depth, func(val []byte) error {
					p.events = append(p.events, inspect(val))
					return nil
				})
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
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadBody, err)
	}
	if i = skipWS(b, i); i != len(b) {
		return fmt.Errorf("%w: %w", ErrBadBody, syntaxErr(b, i, "unexpected data after the JSON value"))
	}
	return nil
}

// inspect records the members the edge reads of an already validated element.
func inspect(val []byte) event {
	e := event{raw: val}
	if len(val) == 0 || val[0] != '{' {
		return e
	}
	e.isObject = true
	// The element is valid JSON already; the second scan is over one event only and finds the member spans.
	_, _ = scanObject(val, 0, 0, func(key []byte, kesc bool, b []byte, vstart, depth int) (int, error) {
		vend, err := scanValue(b, vstart, depth)
		if err == nil {
			e.record(memberName(key, kesc), b[vstart:vend])
		}
		return vend, err
	})
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
