package contract

import (
	"math"
	"strconv"
)

// Numbers in the canonical form. RFC 8785 §3.2.2.3 writes every number as the shortest text that reads back as
// the same IEEE-754 double, in ECMAScript's Number.prototype.toString form. That would make two events that
// differ only in an integer beyond 2^53 (an order id, a snowflake id) hash the same, and dedup would drop the
// second. So the contract extends JCS by one rule, which anyone can reimplement:
//
//	A number written without a fraction and without an exponent (RFC 8259 `-? int`) is written in the canonical
//	form exactly as it was sent, except -0, which is written 0. Every other number is written as RFC 8785 says.
//
// RFC 8259 forbids leading zeros, so an integer literal already has one spelling; for |n| <= 2^53 the rule gives
// JCS's own text. It is what go-json-experiment's jsontext.Value.Canonicalize(jsontext.CanonicalizeRawInts(false))
// writes, which the tests hold this package to. `1`, `1.0` and `1e0` still canonicalize alike ("1"), so a retry
// re-serialized by another library is one signal.
//
// A number whose magnitude is beyond a double's range (1e400) has no canonical form: the edge refuses the event.

// isIntLiteral reports whether a validated number has no fraction or exponent.
func isIntLiteral(num []byte) bool {
	for _, c := range num {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// appendCanonicalNumber appends the canonical form of the validated number literal num. ok is false when the
// value is beyond a double's range; the literal is then appended as written.
func appendCanonicalNumber(dst, num []byte) (out []byte, ok bool) {
	if isIntLiteral(num) {
		if len(num) == 2 && num[0] == '-' && num[1] == '0' {
			return append(dst, '0'), true
		}
		return append(dst, num...), true
	}
	f, err := strconv.ParseFloat(string(num), 64)
	if err != nil && math.IsInf(f, 0) {
		return append(dst, num...), false
	}
	return appendES6(dst, f), true
}

// appendES6 appends f as ECMAScript's Number.prototype.toString writes it (ECMA-262 Number::toString, the
// serialization RFC 8785 §3.2.2.3 prescribes). f is finite.
func appendES6(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0') // -0 too
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// The shortest round-trip digits d1..dk and the exponent: f = 0.d1..dk × 10^n.
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // d[.ddd]e±xx
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			x, _ := strconv.Atoi(string(e[i+1:]))
			exp = x
			break
		}
	}
	var digits [24]byte
	k := 0
	for _, c := range mant {
		if c != '.' {
			digits[k] = c
			k++
		}
	}
	n := exp + 1
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits[:k]...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:k]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits[:k]...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:k]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}
