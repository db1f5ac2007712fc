package rules

import (
	"strings"
	"unicode/utf8"
)

// Event is what a rule matches against. The processor fills it from what it has already decoded: nothing here
// re-parses the event.
type Event struct {
	// Source is schemas.SourceSegment or schemas.SourceWebhook.
	Source string
	// Type is the call type (track, page, identify, ...) or webhook.
	Type string
	// Name is the event name as the signal queue groups it: track event, page name or URL path, identify.
	Name string
	// URL is the page URL if the event has one (Signal.URL). When empty, match.url patterns look at
	// properties.url, then context.page.url, then properties.path, then context.page.path of Payload.
	URL string
	// Payload is the event JSON decoded into map[string]any (objects), []any (arrays), string, float64 or
	// json.Number, bool and nil, as encoding/json, goccy/go-json and sonic produce with an `any` target.
	Payload map[string]any
}

// Result is what the winning rule mapped.
type Result struct {
	// RuleID is the id of the rule that matched.
	RuleID string
	// Signal is the mapped signal name: the rule's signal, else the event name.
	Signal string
	// Email is the lower-cased, trimmed email found at the rule's email path; empty when the rule maps none or
	// the value there is not an email. It identifies the lead exactly like an identify's traits.email.
	Email string
	// Fields holds the enrichment values found: name, company, title and the fields.<name> targets under
	// <name>. Nil when the rule maps none or none were present.
	Fields map[string]string
}

// maxFieldLen caps a mapped value: mapped fields end up in processor state and in every signal row.
const maxFieldLen = 1024

// pathCache remembers the values of the first dot paths of a tenant for one event; it lives on the stack.
const pathCache = 32

type evaluation struct {
	ev      *Event
	t       *tenantRules
	known   uint32
	vals    [pathCache]any
	present uint32
	url     string
	urlDone bool
}

// Match returns what the highest-priority enabled rule of tenant that matches ev maps, and false when no rule
// matches (the event stays an unmapped signal). It does not allocate unless the winning rule maps fields. A nil
// Set matches nothing.
func (s *Set) Match(tenant string, ev *Event) (Result, bool) {
	if s == nil {
		return Result{}, false
	}
	t := s.tenants[tenant]
	if t == nil || len(t.rules) == 0 {
		return Result{}, false
	}
	e := evaluation{ev: ev, t: t}
	// Two sorted candidate lists, merged on the fly so that the first match in the merge is the winner.
	a, b := t.byEvent[ev.Name], t.other
	for len(a) > 0 || len(b) > 0 {
		var n int32
		if len(b) == 0 || (len(a) > 0 && a[0] < b[0]) {
			n, a = a[0], a[1:]
		} else {
			n, b = b[0], b[1:]
		}
		if c := t.rules[n]; e.matches(c) {
			return e.apply(c), true
		}
	}
	return Result{}, false
}

func (e *evaluation) matches(c *compiled) bool {
	if (c.source != "" && c.source != e.ev.Source) || (c.typ != "" && c.typ != e.ev.Type) {
		return false
	}
	if !c.anyEvent && !c.event.match(e.ev.Name) {
		return false
	}
	if !c.anyURL && !c.url.match(e.pagePath()) {
		return false
	}
	for i := range c.conds {
		if !e.holds(&c.conds[i]) {
			return false
		}
	}
	return true
}

func (e *evaluation) value(i int) (any, bool) {
	if i >= pathCache {
		return e.t.paths[i].lookup(e.ev.Payload)
	}
	bit := uint32(1) << i
	if e.known&bit == 0 {
		v, ok := e.t.paths[i].lookup(e.ev.Payload)
		e.known |= bit
		if ok {
			e.vals[i] = v
			e.present |= bit
		}
	}
	return e.vals[i], e.present&bit != 0
}

func (e *evaluation) holds(k *cond) bool {
	v, ok := e.value(k.path)
	switch k.op {
	case opExists:
		return (ok && v != nil) != k.not
	case opEq:
		return ok && equal(k, v)
	case opNe:
		return !ok || !equal(k, v)
	case opGt, opGte, opLt, opLte:
		f, isNum := number(v)
		if !ok || !isNum {
			return false
		}
		switch k.op {
		case opGt:
			return f > k.num
		case opGte:
			return f >= k.num
		case opLt:
			return f < k.num
		}
		return f <= k.num
	}
	if !ok {
		return false
	}
	s, isText := v.(string)
	if !isText {
		if s, isText = text(v); !isText {
			return false
		}
	}
	switch k.op {
	case opPrefix:
		return strings.HasPrefix(s, k.str)
	case opGlob:
		return k.glob.match(s)
	case opRegex:
		return k.re.MatchString(s)
	}
	return false
}

func equal(k *cond, v any) bool {
	if s, ok := v.(string); ok {
		return s == k.str
	}
	if k.isNum && isNumber(v) {
		f, _ := number(v)
		return f == k.num
	}
	s, ok := text(v)
	return ok && s == k.str
}

// pagePath is the path of the event's page URL, computed once per event and only if a rule asks.
func (e *evaluation) pagePath() string {
	if !e.urlDone {
		e.urlDone = true
		u := e.ev.URL
		if u == "" {
			u = firstString(e.ev.Payload, "properties", "url", "context", "page", "url")
		}
		if u == "" {
			u = firstString(e.ev.Payload, "properties", "path", "context", "page", "path")
		}
		if u != "" {
			e.url = urlPath(u)
		}
	}
	return e.url
}

// firstString returns payload[a][b] if it is a non-empty string, else payload[c][d][f].
func firstString(p map[string]any, a, b, c, d, f string) string {
	if m, ok := p[a].(map[string]any); ok {
		if s, ok := m[b].(string); ok && s != "" {
			return s
		}
	}
	if m, ok := p[c].(map[string]any); ok {
		if m, ok := m[d].(map[string]any); ok {
			if s, ok := m[f].(string); ok {
				return s
			}
		}
	}
	return ""
}

func (e *evaluation) apply(c *compiled) Result {
	r := Result{RuleID: c.id, Signal: c.signal}
	if r.Signal == "" {
		r.Signal = e.ev.Name
	}
	for i := range c.targets {
		tg := &c.targets[i]
		v, ok := tg.path.lookup(e.ev.Payload)
		if !ok {
			continue
		}
		s, ok := text(v)
		if s = strings.TrimSpace(s); !ok || s == "" {
			continue
		}
		if tg.field == TargetEmail {
			r.Email = normalizeEmail(s)
			continue
		}
		if len(s) > maxFieldLen {
			n := maxFieldLen
			for n > 0 && !utf8.RuneStart(s[n]) {
				n--
			}
			s = s[:n]
		}
		if r.Fields == nil {
			r.Fields = make(map[string]string, len(c.targets))
		}
		r.Fields[tg.field] = s
	}
	return r
}

// normalizeEmail lower-cases an email and returns "" for anything that cannot be one, so that a rule pointing at
// the wrong field never creates a lead called "true" or "anonymous".
func normalizeEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 || strings.ContainsAny(s, " \t\r\n<>,;") || strings.Count(s, "@") != 1 {
		return ""
	}
	return s
}
