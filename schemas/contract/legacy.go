package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"unicode/utf8"
)

// LegacySignalID is the signal id the processor computed before the contract (until contract version 1): the
// hex SHA-256 of the payload with object members sorted by their raw key bytes (quotes and escapes included) at
// every level, no whitespace, every scalar byte for byte as written, and the root's sentAt and receivedAt left
// out. Dedup entries, held signals and ClickHouse rows written before the upgrade carry ids computed this way;
// the processor uses it only to find those (see the processor README, "Upgrading to the event contract"), and
// nothing else should. ok is false for what the old processor could not parse (it dead-lettered such events, so
// no state carries their id): not one JSON object, or nested deeper than 64.
func LegacySignalID(payload []byte) (id string, ok bool) {
	var l legacyCanon
	i := skipWS(payload, 0)
	if i >= len(payload) || payload[i] != '{' {
		return "", false
	}
	end, err := l.value(payload, i, 0, true)
	if err != nil || skipWS(payload, end) != len(payload) {
		return "", false
	}
	sum := sha256.Sum256(l.out)
	return hex.EncodeToString(sum[:]), true
}

// legacyMaxDepth is the old parser's nesting limit.
const legacyMaxDepth = 64

type legacyCanon struct {
	out, tmp []byte
	mem      []legacyMember
}

type legacyMember struct {
	key        []byte // raw, with quotes
	start, end int32  // the member's `key:value` in out
}

var legacyTransport = []string{"sentAt", "receivedAt"}

func (l *legacyCanon) value(b []byte, i, depth int, root bool) (int, error) {
	if depth > legacyMaxDepth {
		return i, syntaxErr(b, i, "nesting too deep")
	}
	if i >= len(b) {
		return i, syntaxErr(b, i, "expected a value")
	}
	switch b[i] {
	case '{':
		objStart := len(l.out)
		mark := len(l.mem)
		j := skipWS(b, i+1)
		if j < len(b) && b[j] == '}' {
			l.out = append(l.out, '{', '}')
			return j + 1, nil
		}
		for {
			if j >= len(b) || b[j] != '"' {
				return j, syntaxErr(b, j, "expected a string key")
			}
			kend, esc, err := scanString(b, j)
			if err != nil {
				return j, err
			}
			key := b[j:kend]
			j = skipWS(b, kend)
			if j >= len(b) || b[j] != ':' {
				return j, syntaxErr(b, j, "expected ':'")
			}
			j = skipWS(b, j+1)
			mstart := len(l.out)
			l.out = append(l.out, key...)
			l.out = append(l.out, ':')
			if j, err = l.value(b, j, depth+1, false); err != nil {
				return j, err
			}
			if root && legacySkipped(key, esc) {
				l.out = l.out[:mstart]
			} else {
				l.mem = append(l.mem, legacyMember{key, int32(mstart), int32(len(l.out))})
			}
			var done bool
			if j, done, err = afterMember(b, j, '}'); err != nil {
				return j, err
			} else if done {
				break
			}
		}
		ms := l.mem[mark:]
		slices.SortStableFunc(ms, func(a, b legacyMember) int { return bytes.Compare(a.key, b.key) })
		l.tmp = append(l.tmp[:0], l.out[objStart:]...)
		l.out = append(l.out[:objStart], '{')
		for k, m := range ms {
			if k > 0 {
				l.out = append(l.out, ',')
			}
			l.out = append(l.out, l.tmp[m.start-int32(objStart):m.end-int32(objStart)]...)
		}
		l.out = append(l.out, '}')
		l.mem = l.mem[:mark]
		return j, nil
	case '[':
		l.out = append(l.out, '[')
		j := skipWS(b, i+1)
		if j < len(b) && b[j] == ']' {
			l.out = append(l.out, ']')
			return j + 1, nil
		}
		for first := true; ; first = false {
			if !first {
				l.out = append(l.out, ',')
			}
			var err error
			if j, err = l.value(b, j, depth+1, false); err != nil {
				return j, err
			}
			var done bool
			if j, done, err = afterMember(b, j, ']'); err != nil {
				return j, err
			} else if done {
				l.out = append(l.out, ']')
				return j, nil
			}
		}
	default:
		end, err := scanValue(b, i, depth)
		if err != nil {
			return i, err
		}
		l.out = append(l.out, b[i:end]...)
		return end, nil
	}
}

// legacySkipped is the old processor's test for a transport member: the raw key, or its strconv.Unquote when
// it has escapes (which, being Go's unquoting, fails on `\/` and keeps the member).
func legacySkipped(rawKey []byte, escaped bool) bool {
	for _, s := range legacyTransport {
		if len(rawKey) == len(s)+2 && string(rawKey[1:len(rawKey)-1]) == s {
			return true
		}
	}
	if !escaped {
		return false
	}
	inner := rawKey[1 : len(rawKey)-1]
	var k string
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		k = string(inner)
	} else if u, err := strconv.Unquote(string(rawKey)); err == nil {
		k = u
	} else {
		k = string(inner)
	}
	return slices.Contains(legacyTransport, k)
}
