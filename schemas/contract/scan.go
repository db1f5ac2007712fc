package contract

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// The scanner validates JSON syntax (RFC 8259, strictly: no leading zeros, no trailing commas, no NaN, no
// comments, control characters only escaped) without building a tree: it reports where values start and end, so
// the callers decode only the few members they read. The semantic checks (UTF-8, surrogates, duplicate names,
// number range) happen in the canonicalizer, which reads every string and number anyway.

// MaxDepth bounds the nesting of arrays and objects in a request body, counted from the body's root (an event in
// a batch starts two levels down), so that a hostile body cannot exhaust the stack.
const MaxDepth = 128

// ErrSyntax is wrapped by every syntax error; the message says what and where.
var ErrSyntax = errors.New("invalid JSON")

func syntaxErr(b []byte, i int, what string) error {
	if i >= len(b) {
		return fmt.Errorf("%w: unexpected end of input, %s", ErrSyntax, what)
	}
	return fmt.Errorf("%w at byte %d: %s", ErrSyntax, i, what)
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue validates the JSON value starting at b[i] (no leading whitespace) and returns the index just past it.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, syntaxErr(b, i, "expected a value")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := scanString(b, i)
		return end, err
	case c == '{':
		return scanObject(b, i, depth, nil)
	case c == '[':
		return scanArray(b, i, depth, nil)
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	default:
		return i, syntaxErr(b, i, fmt.Sprintf("unexpected character %q", c))
	}
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, syntaxErr(b, i, "invalid literal")
	}
	return i + len(lit), nil
}

// strPlain marks the bytes a string can hold without a closer look: not '"', '\\' or a control character;
// strASCII the same without the bytes of multi-byte UTF-8 sequences.
var strPlain, strASCII = func() (p, a [256]bool) {
	for c := 0x20; c < 256; c++ {
		p[c] = c != '"' && c != '\\'
		a[c] = p[c] && c < 0x80
	}
	return p, a
}()

// Flags scanStringFlags reports about a string's contents.
const (
	strEscaped  = 1 << iota // has a backslash escape
	strNonASCII             // has a byte >= 0x80 (UTF-8 to check)
)

// scanString validates the string starting at the quote b[i]; escaped reports whether it contains a backslash.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	end, flags, err := scanStringFlags(b, i)
	return end, flags&strEscaped != 0, err
}

// scanStringFlags is scanString reporting strEscaped and strNonASCII, so that callers copy plain strings as
// they are without looking at them again.
func scanStringFlags(b []byte, i int) (end int, flags uint8, err error) {
	i++ // opening quote
	for i < len(b) {
		// UTF-8 is checked by the canonicalizer: the scanner only needs the ASCII delimiters, which never occur
		// inside a multi-byte sequence. The first word of skipPlain is done here: most strings end in it, and
		// the call is a good part of the cost of a short string.
		if i+8 <= len(b) {
			const lo, hi = 0x0101010101010101, 0x8080808080808080
			x := binary.LittleEndian.Uint64(b[i:])
			q, bs := x^(lo*'"'), x^(lo*'\\')
			m := ((q - lo) &^ q) | ((bs - lo) &^ bs) | ((x - lo*0x20) &^ x)
			if flags&strNonASCII == 0 {
				m |= x
			}
			if m &= hi; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
			} else {
				i = skipPlain(b, i+8, flags&strNonASCII != 0)
			}
		} else {
			i = skipPlain(b, i, flags&strNonASCII != 0)
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, flags, nil
		case c >= 0x80:
			flags |= strNonASCII
			i++
		case c == '\\':
			flags |= strEscaped
			if i+1 >= len(b) {
				return i, flags, syntaxErr(b, i+1, "unterminated escape")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, flags, syntaxErr(b, i, "invalid \\u escape")
				}
				i += 6
			default:
				return i, flags, syntaxErr(b, i, "invalid escape")
			}
		default:
			return i, flags, syntaxErr(b, i, "control character in string")
		}
	}
	return i, flags, syntaxErr(b, i, "unterminated string")
}

// skipPlain returns the index of the first byte at or after i that ends a run of plain string bytes: '"', '\\',
// a control character, or (unless nonASCII, once one was seen) a byte >= 0x80. Eight bytes at a time: the
// lowest flagged byte of each word is exact (a borrow only starts at a real match).
func skipPlain(b []byte, i int, nonASCII bool) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(lo*'"'), x^(lo*'\\')
		m := ((q - lo) &^ q) | ((bs - lo) &^ bs) | ((x - lo*0x20) &^ x)
		if !nonASCII {
			m |= x
		}
		if m &= hi; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	tab := &strASCII
	if nonASCII {
		tab = &strPlain
	}
	for i < len(b) && tab[b[i]] {
		i++
	}
	return i
}

// skipComposite returns the index just past the object or array at b[i] ('{' or '['), matching brackets
// outside strings and enforcing MaxDepth, without validating anything else: the splitter uses it for the events
// of a body, whose syntax the canonicalizer validates when it reads each one. For valid JSON the end is exact.
func skipComposite(b []byte, i, depth int) (int, error) {
	const lo, hi, or20 = 0x0101010101010101, 0x8080808080808080, 0x2020202020202020
	var stack [MaxDepth/64 + 1]uint64 // bit set: the open bracket at that level is '['
	start, level := i, 0
	for i < len(b) {
		// Skip to the next quote or bracket, eight bytes at a time ('[' and ']' are '{' and '}' with bit 5 clear).
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q, y := x^(lo*'"'), x|or20
			ob, cb := y^(lo*'{'), y^(lo*'}')
			if m := (((q - lo) &^ q) | ((ob - lo) &^ ob) | ((cb - lo) &^ cb)) & hi; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i]|0x20 != '{' && b[i]|0x20 != '}' {
			i++
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; c {
		case '"':
			j := i + 1
			for {
				j = skipToQuoteOrEscape(b, j)
				if j >= len(b) {
					return j, syntaxErr(b, j, "unterminated string")
				}
				if b[j] == '"' {
					break
				}
				j += 2 // an escape: the next byte is never the end of the string
			}
			i = j + 1
		case '{', '[':
			if depth+level >= MaxDepth {
				return i, syntaxErr(b, i, "nesting too deep")
			}
			if c == '[' {
				stack[level/64] |= 1 << (level % 64)
			} else {
				stack[level/64] &^= 1 << (level % 64)
			}
			level++
			i++
		case '}', ']':
			if level == 0 {
				return i, syntaxErr(b, i, "unexpected closing bracket")
			}
			level--
			if isArr := stack[level/64]&(1<<(level%64)) != 0; isArr != (c == ']') {
				return i, syntaxErr(b, i, "mismatched bracket")
			}
			i++
			if level == 0 {
				return i, nil
			}
		}
	}
	what := "unterminated object"
	if b[start] == '[' {
		what = "unterminated array"
	}
	return i, syntaxErr(b, i, what)
}

// skipToQuoteOrEscape returns the index of the next '"' or '\\' at or after i.
func skipToQuoteOrEscape(b []byte, i int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q, bs := x^(lo*'"'), x^(lo*'\\')
		if m := (((q - lo) &^ q) | ((bs - lo) &^ bs)) & hi; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return start, syntaxErr(b, i, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			return start, syntaxErr(b, i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return start, syntaxErr(b, i, "invalid number")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

// memberFunc is called for each member of an object with the key's raw bytes between the quotes and whether the
// key has escapes. It must scan the value starting at b[vstart] itself (usually with scanValue) and return the
// index just past it: that lets a caller treat one member specially (the events of a batch) in the same pass.
type memberFunc func(key []byte, keyEscaped bool, b []byte, vstart, depth int) (vend int, err error)

// scanObject validates the object starting at b[i] == '{' and calls visit (when not nil) for each member.
func scanObject(b []byte, i, depth int, visit memberFunc) (int, error) {
	if depth >= MaxDepth {
		return i, syntaxErr(b, i, "nesting too deep")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, syntaxErr(b, i, "expected a string key")
		}
		kend, kesc, err := scanString(b, i)
		if err != nil {
			return i, err
		}
		key := b[i+1 : kend-1]
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return i, syntaxErr(b, i, "expected ':' after key")
		}
		i = skipWS(b, i+1)
		if visit != nil {
			i, err = visit(key, kesc, b, i, depth+1)
		} else {
			i, err = scanValue(b, i, depth+1)
		}
		if err != nil {
			return i, err
		}
		var done bool
		if i, done, err = afterMember(b, i, '}'); done || err != nil {
			return i, err
		}
	}
}

// scanArray validates the array starting at b[i] == '[' and calls elem (when not nil) with each element's span.
func scanArray(b []byte, i, depth int, elem func(val []byte) error) (int, error) {
	if depth >= MaxDepth {
		return i, syntaxErr(b, i, "nesting too deep")
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		start := i
		var err error
		if i, err = scanValue(b, i, depth+1); err != nil {
			return i, err
		}
		if elem != nil {
			if err := elem(b[start:i]); err != nil {
				return i, err
			}
		}
		var done bool
		if i, done, err = afterMember(b, i, ']'); done || err != nil {
			return i, err
		}
	}
}

// afterMember reads what follows an array element or object member at b[i:]: a ',' (returns the index of the next
// member, done false) or the closing bracket (returns the index after it, done true).
func afterMember(b []byte, i int, closing byte) (next int, done bool, err error) {
	what := "array"
	if closing == '}' {
		what = "object"
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return i, false, syntaxErr(b, i, "unterminated "+what)
	}
	switch b[i] {
	case ',':
		return skipWS(b, i+1), false, nil
	case closing:
		return i + 1, true, nil
	}
	return i, false, syntaxErr(b, i, "expected ',' or '"+string(closing)+"' in "+what)
}
