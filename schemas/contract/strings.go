package contract

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// Strings. The contract decodes every escape of RFC 8259 §7, `\/` included, and joins surrogate pairs
// (`\ud83d\ude00` is U+1F600). Two things RFC 8259 leaves to the implementation are refused at the edge, because
// the canonical form (RFC 8785) and every consumer downstream need well-formed Unicode:
//   - bytes that are not UTF-8 (RFC 8259 §8.1: JSON exchanged between systems MUST be UTF-8);
//   - a `\uD800`-`\uDFFF` escape that is not half of a pair (a "lone surrogate", which no UTF-8 text can hold).
//
// A record written before the contract existed may hold either; reading those (lenient mode) replaces each with
// U+FFFD, as encoding/json does, so the same bytes always derive the same fields.

// Violations the canonicalizer reports; they are the reasons an edge gives for refusing an event.
const (
	violationUTF8      = "invalid UTF-8 in a string"
	violationSurrogate = "lone UTF-16 surrogate escape in a string"
	violationDuplicate = "duplicate member name"
	violationRange     = "number out of the range of a double"
)

// hexVal returns the value of a hex digit (validated by the scanner).
func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	default:
		return rune(c - 'A' + 10)
	}
}

// readU reads the four hex digits of a \u escape at s[i:] (i just past "\u"); ok is false when they are missing
// (only in input the scanner did not validate).
func readU(s []byte, i int) (r rune, ok bool) {
	if i+4 > len(s) || !isHex(s[i]) || !isHex(s[i+1]) || !isHex(s[i+2]) || !isHex(s[i+3]) {
		return 0, false
	}
	return hexVal(s[i])<<12 | hexVal(s[i+1])<<8 | hexVal(s[i+2])<<4 | hexVal(s[i+3]), true
}

// decodeEscape decodes the escape at s[i] == '\\' and returns the rune, the index after it, and a violation for a
// lone surrogate (the rune is then U+FFFD). A malformed escape (unvalidated input) decodes as U+FFFD.
func decodeEscape(s []byte, i int) (r rune, next int, violation string) {
	if i+1 >= len(s) {
		return utf8.RuneError, len(s), violationSurrogate
	}
	switch s[i+1] {
	case '"':
		return '"', i + 2, ""
	case '\\':
		return '\\', i + 2, ""
	case '/':
		return '/', i + 2, ""
	case 'b':
		return '\b', i + 2, ""
	case 'f':
		return '\f', i + 2, ""
	case 'n':
		return '\n', i + 2, ""
	case 'r':
		return '\r', i + 2, ""
	case 't':
		return '\t', i + 2, ""
	case 'u':
		u, ok := readU(s, i+2)
		if !ok {
			return utf8.RuneError, min(i+2, len(s)), violationSurrogate
		}
		next = i + 6
		if !utf16.IsSurrogate(u) {
			return u, next, ""
		}
		if u < 0xDC00 && next+1 < len(s) && s[next] == '\\' && s[next+1] == 'u' {
			if lo, ok := readU(s, next+2); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				return utf16.DecodeRune(u, lo), next + 6, ""
			}
		}
		return utf8.RuneError, next, violationSurrogate
	}
	return utf8.RuneError, i + 2, violationSurrogate
}

// appendDecoded appends the decoded text of a JSON string's contents (between the quotes) to dst. The violation
// is the first one found; its text is replaced by U+FFFD.
func appendDecoded(dst, s []byte) (out []byte, violation string) {
	for i := 0; i < len(s); {
		// Copy runs of plain ASCII at once: most strings are nothing else.
		j := i
		for j < len(s) && s[j] != '\\' && s[j] < utf8.RuneSelf {
			j++
		}
		if j > i {
			dst = append(dst, s[i:j]...)
			if i = j; i == len(s) {
				break
			}
		}
		c := s[i]
		switch {
		case c == '\\':
			r, next, v := decodeEscape(s, i)
			if v != "" && violation == "" {
				violation = v
			}
			dst = utf8.AppendRune(dst, r)
			i = next
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				if violation == "" {
					violation = violationUTF8
				}
			}
			dst = utf8.AppendRune(dst, r)
			i += n
		}
	}
	return dst, violation
}

// plainASCII reports whether a string's contents need no decoding: no escapes and only ASCII.
func plainASCII(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// appendCanonicalString appends the RFC 8785 form of a JSON string whose contents (between the quotes) are s:
// decoded, then written with only `"`, `\` and U+0000-U+001F escaped (\b \t \n \f \r, else \u00xx in lower-case
// hex), everything else as UTF-8. The violation is the first found (the text is repaired with U+FFFD).
// flags are scanStringFlags' for s (strEscaped|strNonASCII when unknown).
func appendCanonicalString(dst, s []byte, flags uint8) (out []byte, violation string) {
	dst = append(dst, '"')
	// Fast path: most strings have no escape and are ASCII or valid UTF-8, and are already canonical.
	if flags&strEscaped == 0 && (flags&strNonASCII == 0 || utf8.Valid(s)) {
		dst = append(dst, s...)
		return append(dst, '"'), ""
	}
	for i := 0; i < len(s); {
		c := s[i]
		var r rune
		switch {
		case c == '\\':
			var v string
			r, i, v = decodeEscape(s, i)
			if v != "" && violation == "" {
				violation = v
			}
		case c < utf8.RuneSelf:
			r = rune(c)
			i++
		default:
			var n int
			r, n = utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 && violation == "" {
				violation = violationUTF8
			}
			i += n
		}
		dst = appendCanonicalRune(dst, r)
	}
	return append(dst, '"'), violation
}

// appendQuotedText appends decoded text (valid UTF-8) as an RFC 8785 string.
func appendQuotedText(dst, text []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(text); {
		c := text[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(text[i:])
			dst = appendCanonicalRune(dst, r)
			i += n
			continue
		}
		dst = appendCanonicalRune(dst, rune(c))
		i++
	}
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

func appendCanonicalRune(dst []byte, r rune) []byte {
	switch r {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\t':
		return append(dst, '\\', 't')
	case '\n':
		return append(dst, '\\', 'n')
	case '\f':
		return append(dst, '\\', 'f')
	case '\r':
		return append(dst, '\\', 'r')
	}
	if r < 0x20 {
		return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
	}
	if r < utf8.RuneSelf {
		return append(dst, byte(r))
	}
	return utf8.AppendRune(dst, r)
}

// compareUTF16 orders two decoded member names as RFC 8785 §3.2.3 does: by their UTF-16 code units. That is
// byte order of the UTF-8 text except where a character above U+FFFF (a surrogate pair in UTF-16, D800-DBFF
// first) meets one in U+E000-U+FFFF.
func compareUTF16(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if i == n {
		switch {
		case len(a) < len(b):
			return -1
		case len(a) > len(b):
			return 1
		}
		return 0
	}
	if a[i] < utf8.RuneSelf || b[i] < utf8.RuneSelf {
		if a[i] < b[i] {
			return -1
		}
		return 1
	}
	// Back up to the start of the character the first difference is in (the same in both: the prefix is equal).
	for i > 0 && !utf8.RuneStart(a[i]) {
		i--
	}
	ra, _ := utf8.DecodeRune(a[i:])
	rb, _ := utf8.DecodeRune(b[i:])
	ua, ub := utf16Unit(ra), utf16Unit(rb)
	switch {
	case ua < ub:
		return -1
	case ua > ub:
		return 1
	case ra < rb: // same high surrogate: the low surrogates order as the code points do
		return -1
	case ra > rb:
		return 1
	}
	// Unreachable for the valid UTF-8 the canonicalizer compares; bytes decide otherwise.
	return bytes.Compare(a[i:], b[i:])
}

// utf16Unit is the first UTF-16 code unit of r.
func utf16Unit(r rune) rune {
	if r >= 0x10000 {
		hi, _ := utf16.EncodeRune(r)
		return hi
	}
	return r
}
