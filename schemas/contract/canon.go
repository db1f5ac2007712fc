package contract

import (
	"errors"
	"fmt"
)

// ErrInvalidEvent wraps every reason the contract refuses an event for: JSON that is well-formed but not
// acceptable (invalid UTF-8, a lone surrogate, a duplicate member name, a number beyond a double's range) and
// Segment calls that break Segment's rules (unknown type, no id). The message is the reason an edge shows.
var ErrInvalidEvent = errors.New("invalid event")

// ErrNotObject means a payload is not one well-formed JSON object: what no edge of this contract accepts, so a
// reader that finds one (a record from another producer) can never process it.
var ErrNotObject = errors.New("payload is not a JSON object")

// transportMembers are the root members a delivery may change without changing the event: they are left out of
// the signal id. sentAt is the client's send time (a retry sends again), receivedAt is stamped by whoever received
// it (Segment), writeKey is the source's credential in browser bodies.
var transportMembers = [...]string{"sentAt", "receivedAt", "writeKey"}

func isTransport(name []byte) bool {
	switch string(name) {
	case transportMembers[0], transportMembers[1], transportMembers[2]:
		return true
	}
	return false
}

// span is the input bytes [start, end) of a value; end == 0 when absent.
type span struct{ start, end int32 }

// member is one member of an object being canonicalized: where its decoded name is (in the input when it had no
// escapes, else in canon.dec: nameAt < 0 is dec offset -nameAt-1) and where its `"name":value` was written in the
// output. It holds no pointer, so the sort moves it without write barriers.
type member struct {
	nameAt, nameLen int32
	start, end      int32
	skip            bool // a transport member at the root
}

// name returns m's decoded name.
func (c *canon) name(m *member) []byte {
	if m.nameAt >= 0 {
		return c.in[m.nameAt : m.nameAt+m.nameLen]
	}
	at := -m.nameAt - 1
	return c.dec[at : at+m.nameLen]
}

// canon writes the canonical form of one JSON value and, while it reads the event once, records where the members
// the contract derives fields from are (see slots). It validates the syntax itself, so it can read any bytes.
// The zero value is ready; reusing one avoids all allocation.
type canon struct {
	in  []byte
	out []byte
	tmp []byte   // the members of the object being reordered
	dec []byte   // decoded names that had escapes or non-ASCII
	mem []member // members of the open objects, innermost last
	// strict stops at the first violation; otherwise it is repaired (U+FFFD, last duplicate wins, the number as
	// written) and reported in violation.
	strict       bool
	violation    string
	violationAt  int
	skipTransprt bool // leave the transport members out at the root
	spans        [numSlots]span
	// rootProps and rootTraits are the output spans of the root's properties and traits values after reordering.
	rootProps, rootTraits, rootContext span
}

var errViolation = errors.New("violation")

func (c *canon) violate(what string, at int) error {
	if c.violation == "" {
		c.violation, c.violationAt = what, at
	}
	if c.strict {
		return errViolation
	}
	return nil
}

// reset prepares c for a new input.
func (c *canon) reset(in []byte, strict, skipTransport bool) {
	c.in, c.out, c.dec, c.mem = in, c.out[:0], c.dec[:0], c.mem[:0]
	c.strict, c.violation, c.violationAt, c.skipTransprt = strict, "", 0, skipTransport
	c.spans = [numSlots]span{}
	c.rootProps, c.rootTraits, c.rootContext = span{}, span{}, span{}
}

// object canonicalizes the object at in[i] == '{' of the given node.
func (c *canon) object(i, depth int, n node) (int, error) {
	in := c.in
	if depth >= MaxDepth {
		return i, syntaxErr(in, i, "nesting too deep")
	}
	objStart := len(c.out)
	c.out = append(c.out, '{')
	mark := len(c.mem)
	i = skipWS(in, i+1)
	if i < len(in) && in[i] == '}' {
		c.out = append(c.out, '}')
		return i + 1, nil
	}
	// Members are written in document order, comma separated; reorder rewrites them only when they are not
	// already in canonical order (or one must go).
	inOrder := true
	for {
		if i >= len(in) || in[i] != '"' {
			return i, syntaxErr(in, i, "expected a string key")
		}
		kend, kflags, err := scanStringFlags(in, i)
		if err != nil {
			return i, err
		}
		raw := in[i+1 : kend-1]
		name, nameAt := raw, int32(i+1)
		if kflags != 0 {
			start := len(c.dec)
			var v string
			c.dec, v = appendDecoded(c.dec, raw)
			name, nameAt = c.dec[start:], int32(-start-1)
			if v != "" {
				if err := c.violate(v, i); err != nil {
					return i, err
				}
			}
		}
		i = skipWS(in, kend)
		if i >= len(in) || in[i] != ':' {
			return i, syntaxErr(in, i, "expected ':' after key")
		}
		i = skipWS(in, i+1)
		slot, child := slotOf(n, name)
		if len(c.mem) > mark {
			c.out = append(c.out, ',')
			if inOrder && compareNames(c.name(&c.mem[len(c.mem)-1]), name) >= 0 {
				inOrder = false
			}
		}
		mstart := len(c.out)
		if kflags == 0 {
			c.out = append(c.out, '"') // plain ASCII without escapes is already canonical
			c.out = append(c.out, raw...)
			c.out = append(c.out, '"')
		} else {
			c.out = appendQuotedText(c.out, name)
		}
		c.out = append(c.out, ':')
		vstart := i
		if i, err = c.value(i, depth+1, child); err != nil {
			return i, err
		}
		if slot >= 0 {
			c.spans[slot] = span{int32(vstart), int32(i)}
		}
		skip := n == nodeRoot && c.skipTransprt && isTransport(name)
		inOrder = inOrder && !skip
		c.mem = append(c.mem, member{nameAt: nameAt, nameLen: int32(len(name)), start: int32(mstart), end: int32(len(c.out)), skip: skip})
		var done bool
		if i, done, err = afterMember(in, i, '}'); err != nil {
			return i, err
		} else if done {
			break
		}
	}
	if !inOrder {
		if err := c.reorder(objStart, mark); err != nil {
			return i, err
		}
	}
	c.out = append(c.out, '}')
	if n == nodeRoot {
		c.rootSpans(mark)
	}
	c.mem = c.mem[:mark]
	return i, nil
}

// compareNames orders member names (RFC 8785 §3.2.3), with a fast path for the common ASCII names.
func compareNames(a, b []byte) int {
	n := min(len(a), len(b))
	for k := 0; k < n; k++ {
		if a[k] != b[k] {
			if a[k] < 0x80 && b[k] < 0x80 {
				return int(a[k]) - int(b[k])
			}
			return compareUTF16(a, b)
		}
	}
	return len(a) - len(b)
}

// reorder rewrites the members written since objStart+1 (c.mem[mark:]) sorted by name, comma separated. Equal
// names are a violation; repaired, the last one wins. The member spans are updated to the new positions.
func (c *canon) reorder(objStart, mark int) error {
	ms := c.mem[mark:]
	// Insertion sort, stable (equal names keep document order, so the last of a run is the last one sent):
	// objects have a handful of members, where it beats the general sorts. Small objects sort an index array on
	// the stack, with the names at hand, instead of moving members.
	var idxBuf [24]uint16
	var nameBuf [24][]byte
	var idx []uint16
	var names [][]byte
	if len(ms) <= len(idxBuf) {
		idx, names = idxBuf[:len(ms)], nameBuf[:len(ms)]
	} else {
		idx, names = make([]uint16, len(ms)), make([][]byte, len(ms))
	}
	for k := range ms {
		idx[k], names[k] = uint16(k), c.name(&ms[k])
	}
	for k := 1; k < len(idx); k++ {
		for j := k; j > 0 && compareNames(names[idx[j-1]], names[idx[j]]) > 0; j-- {
			idx[j-1], idx[j] = idx[j], idx[j-1]
		}
	}
	base := int32(objStart + 1)
	c.tmp = append(c.tmp[:0], c.out[base:]...)
	c.out = c.out[:base]
	// The members are rewritten in place in sorted order: member k of the new order is written after every
	// member before it was read, so keep a copy of the old ones.
	var oldBuf [24]member
	old := oldBuf[:0]
	if len(ms) > len(oldBuf) {
		old = make([]member, 0, len(ms))
	}
	old = append(old, ms...)
	w := mark
	for k, i := range idx {
		m := old[i]
		if k+1 < len(idx) && string(names[idx[k+1]]) == string(names[i]) {
			if err := c.violate(violationDuplicate+fmt.Sprintf(" %q", names[i]), objStart); err != nil {
				return err
			}
			continue // repaired: the later one wins
		}
		if m.skip {
			continue
		}
		if w > mark {
			c.out = append(c.out, ',')
		}
		at := int32(len(c.out))
		c.out = append(c.out, c.tmp[m.start-base:m.end-base]...)
		m.start, m.end = at, int32(len(c.out))
		c.mem[w] = m
		w++
	}
	c.mem = c.mem[:w]
	return nil
}

// rootSpans records the output spans of the root's properties, traits and context values.
func (c *canon) rootSpans(mark int) {
	for k := range c.mem[mark:] {
		m := &c.mem[mark+k]
		if m.skip {
			continue
		}
		// The value starts after `"name":`; these names are plain ASCII, so that is len(name)+3.
		v := span{m.start + m.nameLen + 3, m.end}
		switch string(c.name(m)) {
		case "properties":
			c.rootProps = v
		case "traits":
			c.rootTraits = v
		case "context":
			c.rootContext = v
		}
	}
}

func (c *canon) array(i, depth int, n node) (int, error) {
	in := c.in
	if depth >= MaxDepth {
		return i, syntaxErr(in, i, "nesting too deep")
	}
	c.out = append(c.out, '[')
	i = skipWS(in, i+1)
	if i < len(in) && in[i] == ']' {
		c.out = append(c.out, ']')
		return i + 1, nil
	}
	for first := true; ; first = false {
		if !first {
			c.out = append(c.out, ',')
		}
		var err error
		if i, err = c.value(i, depth+1, nodeNone); err != nil {
			return i, err
		}
		var done bool
		if i, done, err = afterMember(in, i, ']'); err != nil || done {
			if err == nil {
				c.out = append(c.out, ']')
			}
			return i, err
		}
	}
}

// value canonicalizes the value at in[i] (no leading whitespace).
func (c *canon) value(i, depth int, n node) (int, error) {
	in := c.in
	if i >= len(in) {
		return i, syntaxErr(in, i, "expected a value")
	}
	switch ch := in[i]; {
	case ch == '"':
		end, flags, err := scanStringFlags(in, i)
		if err != nil {
			return i, err
		}
		if flags == 0 {
			c.out = append(c.out, in[i:end]...)
			return end, nil
		}
		var v string
		c.out, v = appendCanonicalString(c.out, in[i+1:end-1], flags)
		if v != "" {
			if err := c.violate(v, i); err != nil {
				return i, err
			}
		}
		return end, nil
	case ch == '{':
		return c.object(i, depth, n)
	case ch == '[':
		return c.array(i, depth, n)
	case ch == '-' || isDigit(ch):
		end, err := scanNumber(in, i)
		if err != nil {
			return i, err
		}
		var ok bool
		if c.out, ok = appendCanonicalNumber(c.out, in[i:end]); !ok {
			if err := c.violate(violationRange, i); err != nil {
				return i, err
			}
		}
		return end, nil
	case ch == 't', ch == 'f', ch == 'n':
		lit := "null"
		if ch == 't' {
			lit = "true"
		} else if ch == 'f' {
			lit = "false"
		}
		end, err := scanLiteral(in, i, lit)
		if err != nil {
			return i, err
		}
		c.out = append(c.out, lit...)
		return end, nil
	default:
		return i, syntaxErr(in, i, fmt.Sprintf("unexpected character %q", ch))
	}
}

// event canonicalizes in, which must be exactly one JSON object (whitespace around it allowed). A violation
// in strict mode is returned as ErrInvalidEvent with its reason.
func (c *canon) event(in []byte, strict, skipTransport bool) error {
	c.reset(in, strict, skipTransport)
	i := skipWS(in, 0)
	if i >= len(in) || in[i] != '{' {
		return ErrNotObject
	}
	i, err := c.object(i, 0, nodeRoot)
	switch {
	case errors.Is(err, errViolation):
		return fmt.Errorf("%w: %s at byte %d", ErrInvalidEvent, c.violation, c.violationAt)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	if i = skipWS(in, i); i != len(in) {
		return fmt.Errorf("%w: %w", ErrNotObject, syntaxErr(in, i, "unexpected data after the JSON value"))
	}
	return nil
}

// Canonical appends the canonical form of the JSON value v to dst: RFC 8785 (JCS) with the contract's integer
// rule (see number.go). It fails with ErrSyntax for malformed JSON and ErrInvalidEvent for well-formed JSON that
// has no canonical form (invalid UTF-8, a lone surrogate, a duplicate name, a number beyond a double's range).
func Canonical(dst, v []byte) ([]byte, error) {
	var c canon
	c.reset(v, true, false)
	c.out = dst
	i := skipWS(v, 0)
	i, err := c.value(i, 0, nodeNone)
	switch {
	case errors.Is(err, errViolation):
		return dst, fmt.Errorf("%w: %s at byte %d", ErrInvalidEvent, c.violation, c.violationAt)
	case err != nil:
		return dst, err
	}
	if i = skipWS(v, i); i != len(v) {
		return dst, syntaxErr(v, i, "unexpected data after the JSON value")
	}
	return c.out, nil
}
