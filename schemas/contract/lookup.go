package contract

import (
	"strconv"
)

// Lookup returns the value at a dot path of an event payload, the path already split at the dots
// (properties.form_name is ["properties", "form_name"]; a segment that is a non-negative decimal integer indexes
// an array: products.0.sku). The value is returned as text: strings decoded, numbers and booleans as written,
// objects and arrays in canonical form. ok is false when the path does not exist, holds null, or the payload is
// not well-formed on the way. A name that occurs twice resolves to the last one, as encoding/json does. It reads
// only what lies on the path: mapping rules call it for the few events and paths they look into.
func Lookup(payload []byte, segs []string) (string, bool) {
	i := skipWS(payload, 0)
	start, end, ok := lookupSpan(payload, i, segs)
	if !ok {
		return "", false
	}
	v := payload[start:end]
	switch v[0] {
	case '"':
		s, _ := appendDecoded(make([]byte, 0, len(v)-2), v[1:len(v)-1])
		return string(s), true
	case 'n':
		return "", false
	case '{', '[':
		out, err := Canonical(nil, v)
		if err != nil {
			// Not canonicalizable (only in records written before the contract): the value as sent.
			return string(v), true
		}
		return string(out), true
	}
	return string(v), true
}

// lookupSpan follows segs from the value at b[i] and returns the bounds of the value found.
func lookupSpan(b []byte, i int, segs []string) (start, end int, ok bool) {
	for _, seg := range segs {
		if i >= len(b) {
			return 0, 0, false
		}
		switch b[i] {
		case '{':
			found := -1
			for key, vs, next, more := memberAt(b, i+1); more; key, vs, next, more = memberAt(b, next) {
				if nameIs(key, seg) {
					found = vs
				}
			}
			if found < 0 {
				return 0, 0, false
			}
			i = found
		case '[':
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || seg[0] == '+' || seg[0] == '-' {
				return 0, 0, false
			}
			j := skipWS(b, i+1)
			for k := 0; ; k++ {
				if j >= len(b) || b[j] == ']' {
					return 0, 0, false
				}
				if k == n {
					break
				}
				vend, err := scanValue(b, j, 1)
				if err != nil {
					return 0, 0, false
				}
				if j = skipWS(b, vend); j >= len(b) || b[j] != ',' {
					return 0, 0, false
				}
				j = skipWS(b, j+1)
			}
			i = j
		default:
			return 0, 0, false
		}
	}
	vend, err := scanValue(b, i, 1)
	if err != nil {
		return 0, 0, false
	}
	return i, vend, true
}

// memberAt reads the member of an object starting at or after b[i] (just past '{' or a previous member): its raw
// key and the start of its value; next is where the following member starts. more is false at the end or on
// malformed input.
func memberAt(b []byte, i int) (key []byte, vstart, next int, more bool) {
	i = skipWS(b, i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, 0, i, false
	}
	kend, _, err := scanString(b, i)
	if err != nil {
		return nil, 0, i, false
	}
	key = b[i+1 : kend-1]
	j := skipWS(b, kend)
	if j >= len(b) || b[j] != ':' {
		return nil, 0, i, false
	}
	vstart = skipWS(b, j+1)
	vend, err := scanValue(b, vstart, 1)
	if err != nil {
		return nil, 0, i, false
	}
	return key, vstart, vend, true
}

// nameIs reports whether the raw key decodes to name.
func nameIs(key []byte, name string) bool {
	if plainASCII(key) {
		return string(key) == name
	}
	var buf [64]byte
	d, _ := appendDecoded(buf[:0], key)
	return string(d) == name
}
