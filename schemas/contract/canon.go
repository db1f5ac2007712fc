package contract

import (
	"encoding/binary"
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

// isTransport reports whether name is one of the transport members: the root members a delivery may change
// without changing the event, left out of the signal id. sentAt is the client's send time (a retry sends again),
// receivedAt is stamped by whoever received it (Segment), writeKey is the source's credential in browser bodies.
func isTransport(name []byte) bool {
	switch string(name) { // constant cases: no conversion
	case "sentAt", "receivedAt", "writeKey":
		return true
	}
	return false
}

// span is the input bytes [start, end) of a value; end == 0 when absent.
type span struct{ start, end int32 }

// member is one member of an object being canonicalized: where its decoded name is (the input's bytes, or the
// canon's dec buffer when it had escapes or non-ASCII) and where its `"name":value` was written in the output.
// The members of an object live in its reader's stack frame (8 before they spill); they hold no pointer.
type member struct {
	ns, ne     int32 // the name, in in or (dec) in c.dec
	start, end int32
	dec        bool
	skip       bool // a transport member at the root, or a duplicate left out
}

// name returns the decoded name of m.
func (c *canon) name(m *member) []byte {
	if m.dec {
		return c.dec[m.ns:m.ne]
	}
	return c.in[m.ns:m.ne]
}

// canon writes the canonical form of one JSON value and, while it reads the event once, records where the members
// the contract derives fields from are (see slots). It validates the syntax itself, so it can read any bytes.
// The zero value is ready; reusing one avoids all allocation.
type canon struct {
	in    []byte
	out   []byte
	tmp   []byte   // the members of the object being reordered
	order []int32  // their indices, sorted
	keys  []uint64 // their namePrefix
	dec   []byte   // decoded names that had escapes or non-ASCII
	// strict stops at the first violation; otherwise it is repaired (U+FFFD, last duplicate wins, the number as
	// written) and reported in violation.
	strict       bool
	violation    string
	violationAt  int
	skipTransprt bool // leave the transport members out at the root
	spans        [numSlots]span
	escaped      uint64 // bit s: the value of slot s is a string with an escape
	strFlags     uint8  // scanStringFlags' flags of the last string value read
	// rootProps and rootTraits are the output spans of the root's properties and traits values after reordering.
	rootProps, rootTraits, rootContext span
}

var errViolation = errors.New("violation")

// canon.escaped has a bit per slot.
var _ [64 - numSlots]struct{}

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
	c.in, c.out, c.dec = in, c.out[:0], c.dec[:0]
	c.strict, c.violation, c.violationAt, c.skipTransprt = strict, "", 0, skipTransport
	c.spans, c.escaped = [numSlots]span{}, 0
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
	i = skipWS(in, i+1)
	if i < len(in) && in[i] == '}' {
		c.out = append(c.out, '}')
		return i + 1, nil
	}
	var buf [8]member
	ms := buf[:0]
	var prev []byte
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
		name := raw
		ns, ne := int32(i+1), int32(kend-1)
		if kflags != 0 {
			start := len(c.dec)
			var v string
			c.dec, v = appendDecoded(c.dec, raw)
			name = c.dec[start:len(c.dec):len(c.dec)]
			ns, ne = int32(start), int32(len(c.dec))
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
		slot, child := -1, nodeNone
		if n != nodeNone {
			slot, child = slotOf(n, name)
		}
		if len(ms) > 0 {
			c.out = append(c.out, ',')
			if inOrder && compareNames(prev, name) >= 0 {
				inOrder = false
			}
		}
		prev = name
		mstart := len(c.out)
		if kflags == 0 {
			c.out = append(append(c.out, in[ns-1:ne+1]...), ':') // plain ASCII is already canonical
		} else {
			c.out = append(appendQuotedText(c.out, name), ':')
		}
		vstart := i
		if i, err = c.value(i, depth+1, child); err != nil {
			return i, err
		}
		if slot >= 0 {
			c.spans[slot] = span{int32(vstart), int32(i)}
			if in[vstart] == '"' && c.strFlags&strEscaped != 0 {
				c.escaped |= 1 << slot
			} else {
				c.escaped &^= 1 << slot // a duplicate's earlier value may have had one
			}
		}
		skip := n == nodeRoot && c.skipTransprt && isTransport(name)
		inOrder = inOrder && !skip
		// Field by field into the slice: a member built whole on the stack and copied in is read back wider than
		// it was written, which stalls the store forwarding (a tenth of the canonicalizer's time).
		ms = append(ms, member{})
		m := &ms[len(ms)-1]
		m.ns, m.ne, m.start, m.end, m.dec, m.skip = ns, ne, int32(mstart), int32(len(c.out)), kflags != 0, skip
		// What follows the member, without a call in the compact case; afterMember otherwise.
		if i < len(in) && in[i] == ',' && i+1 < len(in) && in[i+1] == '"' {
			i++
			continue
		}
		if i < len(in) && in[i] == '}' {
			i++
			break
		}
		var done bool
		if i, done, err = afterMember(in, i, '}'); err != nil {
			return i, err
		} else if done {
			break
		}
	}
	if !inOrder {
		if err := c.reorder(objStart, ms); err != nil {
			return i, err
		}
	}
	c.out = append(c.out, '}')
	if n == nodeRoot {
		c.rootSpans(ms)
	}
	return i, nil
}

// namePrefix is the first 8 bytes of an ASCII name as a big-endian number, zero-padded: two names whose
// prefixes differ order as the prefixes do (ASCII orders by bytes, a JSON string holds no NUL byte unescaped, so
// the padding sorts a shorter name first, as compareNames does). A name with a non-ASCII byte among its first 8
// has bit 63 set: compareNames decides.
func namePrefix(name []byte) uint64 {
	var k uint64
	if n := len(name); cap(name) >= 8 {
		// One load: the bytes past a short name (the input's, still in the slice's capacity) are masked off.
		k = binary.BigEndian.Uint64(name[:8])
		if n < 8 {
			k &^= 1<<(64-8*n) - 1
		}
	} else {
		for i := 0; i < n; i++ {
			k |= uint64(name[i]) << (56 - 8*i)
		}
	}
	if k&0x8080808080808080 != 0 {
		return 1 << 63
	}
	return k
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

// reorder rewrites the members ms written since objStart+1 sorted by name, comma separated, and records their
// new positions in ms (which stays in document order; a member left out is marked skip). Equal names are a
// violation; repaired, the last one wins.
func (c *canon) reorder(objStart int, ms []member) error {
	// Insertion sort of indices, stable (equal names keep document order, so the last of a run is the last one
	// sent): objects have a handful of members, where it beats the general sorts, and moving an index is cheaper
	// than moving a member.
	order, keys := c.order[:0], c.keys[:0]
	for k := range ms {
		order = append(order, int32(k))
		keys = append(keys, namePrefix(c.name(&ms[k])))
	}
	c.order, c.keys = order, keys
	// less than: compareNames(a, b) < 0, by the names' prefixes when they decide.
	greater := func(a, b int32) bool {
		if ka, kb := keys[a], keys[b]; (ka|kb)>>63 == 0 && ka != kb {
			return ka > kb
		}
		return compareNames(c.name(&ms[a]), c.name(&ms[b])) > 0
	}
	for k := 1; k < len(order); k++ {
		o := order[k]
		j := k
		for ; j > 0 && greater(order[j-1], o); j-- {
			order[j] = order[j-1]
		}
		order[j] = o
	}
	base := int32(objStart + 1)
	c.tmp = append(c.tmp[:0], c.out[base:]...)
	c.out = c.out[:base]
	w := 0
	for k, o := range order {
		m := &ms[o]
		if k+1 < len(order) && string(c.name(&ms[order[k+1]])) == string(c.name(m)) {
			if err := c.violate(violationDuplicate+fmt.Sprintf(" %q", c.name(m)), objStart); err != nil {
				return err
			}
			m.skip = true // repaired: the later one wins
			continue
		}
		if m.skip {
			continue
		}
		if w > 0 {
			c.out = append(c.out, ',')
		}
		at := int32(len(c.out))
		c.out = append(c.out, c.tmp[m.start-base:m.end-base]...)
		m.start, m.end = at, int32(len(c.out))
		w++
	}
	return nil
}

// rootSpans records the output spans of the root's properties, traits and context values.
func (c *canon) rootSpans(ms []member) {
	for k := range ms {
		m := &ms[k]
		if m.skip {
			continue
		}
		// The value starts after `"name":`; these names are plain ASCII, so that is len(name)+3.
		v := span{m.start + (m.ne - m.ns) + 3, m.end}
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
		c.strFlags = flags
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
	i := skipWS(in, 0)
	if i >= len(in) || in[i] != '{' {
		c.reset(in, strict, skipTransport)
		return ErrNotObject
	}
	i, err := c.eventAt(in, i, 0, strict, skipTransport)
	if err != nil {
		return err
	}
	if i = skipWS(in, i); i != len(in) {
		return fmt.Errorf("%w: %w", ErrNotObject, syntaxErr(in, i, "unexpected data after the JSON value"))
	}
	return nil
}

// eventAt canonicalizes the object at in[i] == '{', nested depth deep in in, and returns the index after it.
func (c *canon) eventAt(in []byte, i, depth int, strict, skipTransport bool) (int, error) {
	c.reset(in, strict, skipTransport)
	end, err := c.object(i, depth, nodeRoot)
	switch {
	case errors.Is(err, errViolation):
		return end, fmt.Errorf("%w: %s at byte %d", ErrInvalidEvent, c.violation, c.violationAt)
	case err != nil:
		return end, fmt.Errorf("%w: %w", ErrNotObject, err)
	}
	return end, nil
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
