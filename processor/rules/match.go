package rules

import (
	"strings"
	"sync/atomic"
	"unicode/utf8"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

// FieldReader is an event the caller reads itself. processor.Event satisfies it with its Field method (the event
// contract's contract.Lookup): text of the value at a dot path (strings unescaped, numbers as written, booleans
// true/false, objects and arrays as canonical JSON), ok false when the path is missing or null.
type FieldReader interface {
	Field(path string) (string, bool)
}

// SegmentReader is an optional, faster form of FieldReader: the path comes already split at the dots (and
// must not be kept or modified), so the reader needs no allocation to split it. Match uses it when
// Event.Fields implements it.
type SegmentReader interface {
	FieldSegments(segs []string) (string, bool)
}

// Event is what a rule matches against. The processor fills it from what it has already decoded: nothing here
// re-parses the event. Give either Payload or Fields.
type Event struct {
	// Source is schemas.SourceSegment or schemas.SourceWebhook.
	Source string
	// Type is the call type (track, page, identify, ...) or webhook.
	Type string
	// Name is the event name as the signal queue groups it: track event, page name or URL path, identify.
	Name string
	// URL is the page URL if the event has one (Signal.URL). When empty, match.url patterns look at
	// properties.url, then context.page.url, then properties.path, then context.page.path of the payload.
	URL string
	// Payload is the event JSON decoded into map[string]any (objects), []any (arrays), string, float64 or
	// json.Number, bool and nil, as encoding/json, goccy/go-json and sonic produce with an `any` target.
	Payload map[string]any
	// Fields is used when Payload is nil: the caller's own reader of the event. Each distinct dot path of the tenant's
	// rules is asked for at most once per Match.
	Fields FieldReader
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

// Regex cost bounds (see compileRegex). A regex condition sees at most the first maxRegexInput bytes of a value,
// and one Match spends at most regexBudget (input bytes × program instructions, an upper bound of the NFA's
// work, 7-10 ns a unit here at worst) on regexes: about 2-3 ms for a deliberately hostile rule set
// (BenchmarkHostileRegex). A realistic regex (a 100-byte URL against a 50-instruction pattern) is 5,000 units,
// so about 50 of them fit in one event.
// Once the budget is spent, further regex conditions of that Match do not hold, and RegexBudgetExhausted counts it.
const (
	maxRegexInput = 4096
	regexBudget   = 1 << 18
)

var regexBudgetExhausted atomic.Int64

// RegexBudgetExhausted returns how many regex conditions were not evaluated (and did not hold) because their
// Match had spent its regex budget, since the process started. Non-zero means a tenant's regexes are too
// expensive: the Watcher exports it as signalstage_processor_rules_regex_budget_exhausted_total.
func RegexBudgetExhausted() int64 { return regexBudgetExhausted.Load() }

// maxFieldLen caps a mapped value: mapped fields end up in processor state and in every signal row.
const maxFieldLen = 1024

// How many distinct paths and conditions of a tenant are remembered per event (on the stack, zeroed on every
// Match, so not more than real rule sets use); later ones are evaluated each time they are used, which is
// correct, only slower.
const (
	pathCacheSize = 32
	condCacheSize = 64
)

// fval is a looked-up value: text (str) or another decoded JSON value (v).
type fval struct {
	v     any
	s     string
	isStr bool
	ok    bool
}

type evaluation struct {
	ev          *Event
	t           *tenantRules
	source, typ int32 // interned ev.Source and ev.Type, -1 when no rule names them
	segs        SegmentReader
	pathKnown   uint64
	condKnown   uint64
	condResult  uint64
	vals        [pathCacheSize]fval
	url         string
	urlComputed bool
	regexSpent  int
	spill       fval // value of a path beyond the cache
}

// Match returns what the highest-priority enabled rule of tenant that matches ev maps, and false when no rule
// matches (the event stays an unmapped signal). Identical conditions shared by several rules are evaluated once
// per event. It does not allocate unless the winning rule maps fields (or the FieldReader allocates). A nil Set
// matches nothing.
func (s *Set) Match(tenant string, ev *Event) (Result, bool) {
	if s == nil {
		return Result{}, false
	}
	t := s.tenants[tenant]
	if t == nil || len(t.rules) == 0 {
		return Result{}, false
	}
	e := evaluation{ev: ev, t: t, source: -1, typ: -1}
	if id, ok := t.names[ev.Source]; ok {
		e.source = id
	}
	if id, ok := t.names[ev.Type]; ok {
		e.typ = id
	}
	if ev.Payload == nil {
		e.segs, _ = ev.Fields.(SegmentReader)
	}
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
	if (c.source != 0 && c.source != e.source) || (c.typ != 0 && c.typ != e.typ) {
		return false
	}
	if !c.anyEvent && !c.event.match(e.ev.Name) {
		return false
	}
	if !c.anyURL && !c.url.match(e.pagePath()) {
		return false
	}
	for _, i := range c.conds {
		if !e.holds(i) {
			return false
		}
	}
	return true
}

// holds evaluates the tenant's condition i, once per event.
func (e *evaluation) holds(i int32) bool {
	if i >= condCacheSize {
		return e.eval(&e.t.conds[i])
	}
	bit := uint64(1) << i
	if e.condKnown&bit == 0 {
		e.condKnown |= bit
		if e.eval(&e.t.conds[i]) {
			e.condResult |= bit
		}
	}
	return e.condResult&bit != 0
}

func (e *evaluation) lookup(p *path) fval {
	if e.ev.Payload == nil {
		var s string
		var ok bool
		switch {
		case e.segs != nil:
			s, ok = e.segs.FieldSegments(p.Segments())
		case e.ev.Fields != nil:
			s, ok = e.ev.Fields.Field(p.String())
		default:
			return fval{}
		}
		return fval{s: s, isStr: true, ok: ok}
	}
	v, ok := p.Lookup(e.ev.Payload)
	if !ok || v == nil {
		return fval{}
	}
	s, isStr := v.(string)
	return fval{v: v, s: s, isStr: isStr, ok: true}
}

func (e *evaluation) value(i int) *fval {
	if i >= pathCacheSize {
		e.spill = e.lookup(&e.t.paths[i])
		return &e.spill
	}
	bit := uint64(1) << i
	if e.pathKnown&bit == 0 {
		e.pathKnown |= bit
		e.vals[i] = e.lookup(&e.t.paths[i])
	}
	return &e.vals[i]
}

func (e *evaluation) eval(k *cond) bool {
	v := e.value(k.path)
	switch k.op {
	case opExists:
		return v.ok != k.not
	case opEq:
		return v.ok && equal(k, v)
	case opNe:
		return !v.ok || !equal(k, v)
	case opGt, opGte, opLt, opLte:
		f, isNum := v.number()
		if !isNum {
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
	s, ok := v.text()
	if !ok {
		return false
	}
	switch k.op {
	case opPrefix:
		return strings.HasPrefix(s, k.str)
	case opGlob:
		return k.glob.match(s)
	case opRegex:
		if len(s) > maxRegexInput {
			s = s[:maxRegexInput]
		}
		cost := (len(s) + 1) * k.reInsts
		if e.regexSpent+cost > regexBudget {
			regexBudgetExhausted.Add(1)
			return false
		}
		e.regexSpent += cost
		return k.re.MatchString(s)
	}
	return false
}

func (v *fval) text() (string, bool) {
	if v.isStr {
		return v.s, v.ok
	}
	if !v.ok {
		return "", false
	}
	return srules.Text(v.v)
}

func (v *fval) number() (float64, bool) {
	if !v.ok {
		return 0, false
	}
	if v.isStr {
		return srules.Number(v.s)
	}
	return srules.Number(v.v)
}

// equal: the same text, or both numbers (numeric text counts) with the same value, so 12 eq "12.0".
func equal(k *cond, v *fval) bool {
	if s, ok := v.text(); ok && s == k.str {
		return true
	}
	if k.isNum {
		f, ok := v.number()
		return ok && f == k.num
	}
	return false
}

// pagePath is the path of the event's page URL, computed once per event and only if a rule asks.
func (e *evaluation) pagePath() string {
	if !e.urlComputed {
		e.urlComputed = true
		u := e.ev.URL
		for i := 0; u == "" && i < len(pageURLPaths); i++ {
			if v := e.lookup(&pageURLPaths[i]); v.isStr {
				u = v.s
			}
		}
		if u != "" {
			e.url = srules.URLPath(u)
		}
	}
	return e.url
}

var pageURLPaths = func() []path {
	var ps []path
	for _, s := range []string{"properties.url", "context.page.url", "properties.path", "context.page.path"} {
		p, _ := parsePath(s)
		ps = append(ps, p)
	}
	return ps
}()

func (e *evaluation) apply(c *compiled) Result {
	r := Result{RuleID: c.id, Signal: c.signal}
	if r.Signal == "" {
		r.Signal = e.ev.Name
	}
	for i := range c.targets {
		tg := &c.targets[i]
		v := e.lookup(&tg.path)
		s, ok := v.text()
		if s = strings.TrimSpace(s); !ok || s == "" {
			continue
		}
		if tg.field == TargetEmail {
			r.Email = srules.NormalizeEmail(s)
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
