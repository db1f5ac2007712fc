package rules

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// Limits on dot paths: they bound the work a rule can ask for per event.
const (
	maxPathLen      = 256
	maxPathSegments = 16
)

// Path is a parsed dot path. A segment that is a non-negative integer indexes an array; on an object it is a key.
// The zero Path is not valid; ParsePath makes one.
type Path struct {
	text  string
	segs  []string
	index []int // index[i] >= 0 when segs[i] is an array index
}

// ParsePath parses a dot path such as properties.form_name or products.0.sku. Keys containing a dot cannot be
// addressed; that is the price of the notation the product documents.
func ParsePath(s string) (Path, error) {
	switch {
	case s == "":
		return Path{}, errors.New("empty dot path")
	case len(s) > maxPathLen:
		return Path{}, errors.New("dot path longer than " + strconv.Itoa(maxPathLen) + " characters")
	}
	segs := strings.Split(s, ".")
	if len(segs) > maxPathSegments {
		return Path{}, errors.New("dot path has more than " + strconv.Itoa(maxPathSegments) + " segments")
	}
	p := Path{text: s, segs: segs, index: make([]int, len(segs))}
	for i, seg := range segs {
		if seg == "" {
			return Path{}, errors.New("empty segment in dot path " + strconv.Quote(s))
		}
		if strings.TrimSpace(seg) != seg {
			return Path{}, errors.New("segment " + strconv.Quote(seg) + " has leading or trailing space")
		}
		for _, r := range seg {
			if unicode.IsControl(r) || r == '*' || r == '[' || r == ']' {
				return Path{}, errors.New("segment " + strconv.Quote(seg) + " has a character not allowed in dot paths")
			}
		}
		p.index[i] = -1
		if n, err := strconv.Atoi(seg); err == nil && n >= 0 && seg[0] != '+' {
			p.index[i] = n
		}
	}
	return p, nil
}

// Lookup returns the value at p in v (decoded JSON: map[string]any, []any, scalars) and whether it exists.
func (p *Path) Lookup(v any) (any, bool) {
	for i, seg := range p.segs {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return nil, false
			}
		case []any:
			n := p.index[i]
			if n < 0 || n >= len(x) {
				return nil, false
			}
			v = x[n]
		default:
			return nil, false
		}
	}
	return v, true
}

// Text returns the text form of a scalar JSON value: strings as they are, numbers in their shortest decimal
// form, booleans as true/false. Objects, arrays and null have none.
func Text(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case json.Number:
		return string(x), true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case int:
		return strconv.Itoa(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	}
	return "", false
}

// Number returns the numeric value of v: JSON numbers, and strings holding a decimal number (Segment senders
// often send "99.00" as text).
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		if x == "" || len(x) > 64 {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

// IsNumber reports whether v is a JSON number (not a numeric string).
func IsNumber(v any) bool {
	switch v.(type) {
	case float64, int, int64, json.Number:
		return true
	}
	return false
}

// String is the dot path as written.
func (p *Path) String() string { return p.text }

// Segments are the dot path's segments.
func (p *Path) Segments() []string { return p.segs }
