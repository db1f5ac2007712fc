package processor

import (
	"bytes"
	"slices"
)

// The canonical form is what the signal id hashes: the parsed tree written back with object keys sorted by their
// raw bytes at every level and no whitespace; scalars are copied exactly as written.

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
	return kid.esc && slices.Contains(skip, unquote(rawKey))
}
