package contract

// The processor's JSON reader and canonical form before the contract (processor/json.go and canonical.go at the
// commit before it), kept verbatim as the reference LegacySignalID is tested against.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// refLegacyID is the old processor's signal id of payload (ok false when it did not parse).
func refLegacyID(payload []byte) (string, bool) {
	var p jparser
	root, err := p.parseObject(payload)
	if err != nil {
		return "", false
	}
	sum := sha256.Sum256(appendCanonical(nil, &root, "sentAt", "receivedAt"))
	return hex.EncodeToString(sum[:]), true
}

// refErrNotJSONObject means a payload is not a single, well-formed JSON object.
var refErrNotJSONObject = errors.New("payload is not a JSON object")

const refMaxDepth = 64

// jkind is the kind of a JSON value.
type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNumber
	jString
	jObject
	jArray
)

// jvalue is one parsed JSON value. raw is the exact bytes of a scalar (strings with their quotes); key is the raw
// key (with quotes) when the value is a member of an object; kids are the members or elements, in document order.
type jvalue struct {
	kind jkind
	esc  bool // key has escapes: compare it decoded
	key  []byte
	raw  []byte
	kids []jvalue
}

// jparser parses into an arena it reuses across documents: children are collected on a stack and copied to the
// arena when their parent closes, so a parse allocates nothing once the arena has grown. A tree is valid until the
// parser parses the next document (kids of closed values are never modified, only appended after).
type jparser struct {
	b     []byte
	pos   int
	nodes []jvalue
	stack []jvalue
	esc   bool // the last string scanned had an escape
}

// parseObject parses b, which must hold exactly one JSON object (surrounding whitespace allowed).
func (p *jparser) parseObject(b []byte) (jvalue, error) {
	p.b, p.pos, p.nodes, p.stack = b, 0, p.nodes[:0], p.stack[:0]
	p.ws()
	if p.pos >= len(b) || b[p.pos] != '{' {
		return jvalue{}, refErrNotJSONObject
	}
	v, err := p.value(0)
	if err != nil {
		return jvalue{}, fmt.Errorf("%w: %v", refErrNotJSONObject, err)
	}
	p.ws()
	if p.pos != len(b) {
		return jvalue{}, fmt.Errorf("%w: trailing data at byte %d", refErrNotJSONObject, p.pos)
	}
	return v, nil
}

func (p *jparser) ws() {
	for p.pos < len(p.b) {
		switch p.b[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jparser) errf(what string) error { return fmt.Errorf("%s at byte %d", what, p.pos) }

func (p *jparser) value(depth int) (jvalue, error) {
	if depth > refMaxDepth {
		return jvalue{}, p.errf("nesting too deep")
	}
	p.ws()
	if p.pos >= len(p.b) {
		return jvalue{}, p.errf("unexpected end")
	}
	switch c := p.b[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		raw, err := p.str()
		return jvalue{kind: jString, raw: raw}, err
	case c == 't':
		return p.lit("true", jBool)
	case c == 'f':
		return p.lit("false", jBool)
	case c == 'n':
		return p.lit("null", jNull)
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return jvalue{}, p.errf("unexpected character")
	}
}

func (p *jparser) lit(s string, k jkind) (jvalue, error) {
	if !bytes.HasPrefix(p.b[p.pos:], []byte(s)) {
		return jvalue{}, p.errf("invalid literal")
	}
	raw := p.b[p.pos : p.pos+len(s)]
	p.pos += len(s)
	return jvalue{kind: k, raw: raw}, nil
}

func (p *jparser) number() (jvalue, error) {
	start := p.pos
	if p.b[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.b) && p.b[p.pos] >= '0' && p.b[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if digits() == 0 {
		return jvalue{}, p.errf("invalid number")
	}
	if p.pos < len(p.b) && p.b[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return jvalue{}, p.errf("invalid number")
		}
	}
	if p.pos < len(p.b) && (p.b[p.pos] == 'e' || p.b[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.b) && (p.b[p.pos] == '+' || p.b[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return jvalue{}, p.errf("invalid number")
		}
	}
	return jvalue{kind: jNumber, raw: p.b[start:p.pos]}, nil
}

// str scans a string starting at the opening quote and returns its raw bytes including quotes.
func (p *jparser) str() ([]byte, error) {
	start := p.pos
	p.esc = false
	p.pos++
	for p.pos < len(p.b) {
		// Fast path: skip refPlain bytes in a tight loop; only quotes, backslashes and control bytes need a look.
		b := p.b
		i := p.pos
		for i < len(b) && refPlain[b[i]] {
			i++
		}
		p.pos = i
		if p.pos >= len(b) {
			break
		}
		switch c := p.b[p.pos]; {
		case c == '"':
			p.pos++
			return p.b[start:p.pos], nil
		case c == '\\':
			p.esc = true
			if p.pos+1 >= len(p.b) {
				return nil, p.errf("unterminated string")
			}
			switch p.b[p.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.pos += 2
			case 'u':
				if p.pos+6 > len(p.b) || !refIsHex4(p.b[p.pos+2:p.pos+6]) {
					return nil, p.errf("invalid unicode escape")
				}
				p.pos += 6
			default:
				return nil, p.errf("invalid escape")
			}
		case c < 0x20:
			return nil, p.errf("control character in string")
		default:
			p.pos++
		}
	}
	return nil, p.errf("unterminated string")
}

func (p *jparser) object(depth int) (jvalue, error) {
	p.pos++ // {
	v := jvalue{kind: jObject}
	mark := len(p.stack)
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		p.ws()
		if p.pos >= len(p.b) || p.b[p.pos] != '"' {
			return v, p.errf("expected object key")
		}
		key, err := p.str()
		if err != nil {
			return v, err
		}
		esc := p.esc
		p.ws()
		if p.pos >= len(p.b) || p.b[p.pos] != ':' {
			return v, p.errf("expected colon")
		}
		p.pos++
		val, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		val.key, val.esc = key, esc
		p.stack = append(p.stack, val)
		p.ws()
		if p.pos >= len(p.b) {
			return v, p.errf("unterminated object")
		}
		if p.b[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.b[p.pos] == '}' {
			p.pos++
			v.kids = p.close(mark)
			return v, nil
		}
		return v, p.errf("expected comma or closing brace")
	}
}

func (p *jparser) array(depth int) (jvalue, error) {
	p.pos++ // [
	v := jvalue{kind: jArray}
	mark := len(p.stack)
	p.ws()
	if p.pos < len(p.b) && p.b[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		val, err := p.value(depth + 1)
		if err != nil {
			return v, err
		}
		p.stack = append(p.stack, val)
		p.ws()
		if p.pos >= len(p.b) {
			return v, p.errf("unterminated array")
		}
		if p.b[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.b[p.pos] == ']' {
			p.pos++
			v.kids = p.close(mark)
			return v, nil
		}
		return v, p.errf("expected comma or closing bracket")
	}
}

// close moves the children collected since mark from the stack to the arena and returns them.
func (p *jparser) close(mark int) []jvalue {
	start := len(p.nodes)
	p.nodes = append(p.nodes, p.stack[mark:]...)
	p.stack = p.stack[:mark]
	return p.nodes[start:len(p.nodes):len(p.nodes)]
}

// get returns the member named name of an object (the last one if the key repeats, as encoding/json does).
func (v *jvalue) get(name string) *jvalue {
	if v == nil || v.kind != jObject {
		return nil
	}
	var found *jvalue
	for i := range v.kids {
		k := v.kids[i].key
		if len(k) == len(name)+2 && string(k[1:len(k)-1]) == name {
			found = &v.kids[i]
		} else if v.kids[i].esc && refUnquote(k) == name {
			found = &v.kids[i]
		}
	}
	return found
}

// path follows dot-separated member names; on an array, a segment that is a non-negative integer indexes it
// (products.0.sku), as the rules engine's dot paths do.
func (v *jvalue) path(names ...string) *jvalue {
	for _, n := range names {
		if v != nil && v.kind == jArray {
			v = v.index(n)
		} else {
			v = v.get(n)
		}
		if v == nil {
			return nil
		}
	}
	return v
}

// index returns the element of an array at the decimal index seg, nil when seg is no index or out of range.
func (v *jvalue) index(seg string) *jvalue {
	n, err := strconv.Atoi(seg)
	if err != nil || n < 0 || seg[0] == '+' || seg[0] == '-' || n >= len(v.kids) {
		return nil
	}
	return &v.kids[n]
}

// text returns a string value unescaped; numbers and booleans as written; "" for anything else.
func (v *jvalue) text() string {
	if v == nil {
		return ""
	}
	switch v.kind {
	case jString:
		return refUnquote(v.raw)
	case jNumber, jBool:
		return string(v.raw)
	}
	return ""
}

// transientText is text without a copy for an unescaped string: the result aliases the payload and must not be
// kept beyond the call that reads it (time.Parse here).
func (v *jvalue) transientText() string {
	if v != nil && v.kind == jString {
		inner := v.raw[1 : len(v.raw)-1]
		if len(inner) > 0 && bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
			return unsafe.String(&inner[0], len(inner))
		}
	}
	return v.text()
}

// refUnquote decodes a raw JSON string (with quotes); invalid escapes give the raw inner bytes.
func refUnquote(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	s, err := strconv.Unquote(string(raw))
	if err != nil {
		return string(inner)
	}
	return s
}

// refPlain marks the bytes a string may hold without a closer look.
var refPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func refIsHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// appendCanonical writes v with object keys sorted (by their raw bytes) recursively and no whitespace. skip names
// top-level members to leave out (transport fields).
func appendCanonical(dst []byte, v *jvalue, skip ...string) []byte {
	switch v.kind {
	case jObject:
		var idx [32]int32
		order := idx[:0]
		for i := range v.kids {
			if len(skip) > 0 && skipped(&v.kids[i], skip) {
				continue
			}
			order = append(order, int32(i))
		}
		kids := v.kids
		slices.SortStableFunc(order, func(a, b int32) int { return bytes.Compare(kids[a].key, kids[b].key) })
		dst = append(dst, '{')
		for n, i := range order {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, kids[i].key...)
			dst = append(dst, ':')
			dst = appendCanonical(dst, &kids[i])
		}
		return append(dst, '}')
	case jArray:
		dst = append(dst, '[')
		for i := range v.kids {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCanonical(dst, &v.kids[i])
		}
		return append(dst, ']')
	default:
		return append(dst, v.raw...)
	}
}

func skipped(kid *jvalue, skip []string) bool {
	rawKey := kid.key
	for _, s := range skip {
		if len(rawKey) == len(s)+2 && string(rawKey[1:len(rawKey)-1]) == s {
			return true
		}
	}
	return kid.esc && slices.Contains(skip, refUnquote(rawKey))
}
