package rules

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	srules "github.com/signalstage/signalstage/schemas/rules"
)

func payload(t testing.TB, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

const trackDemo = `{"type":"track","event":"Form Submitted","anonymousId":"a1","messageId":"m1",
 "properties":{"form_name":"demo","email":" Jane@Example.COM ","revenue":"120.50","seats":12,"plan":"pro",
   "products":[{"sku":"SKU-1"},{"sku":"SKU-2"}],"flag":true,"none":null},
 "traits":{"company":"Example Inc","title":"CTO","name":"Jane"},
 "context":{"page":{"url":"https://example.com/docs/setup?x=1","path":"/docs/setup"}}}`

func TestMatchConditions(t *testing.T) {
	p := payload(t, trackDemo)
	ev := &Event{Source: "segment", Type: "track", Name: "Form Submitted", Payload: p}
	for _, tc := range []struct {
		name string
		m    Match
		want bool
	}{
		{"empty match", Match{}, true},
		{"source", Match{Source: "segment"}, true},
		{"source any", Match{Source: "any"}, true},
		{"other source", Match{Source: "webhook"}, false},
		{"type", Match{Type: "page"}, false},
		{"event exact", Match{Event: "Form Submitted"}, true},
		{"event exact miss", Match{Event: "Form"}, false},
		{"event glob", Match{Event: "Form *"}, true},
		{"event glob miss", Match{Event: "*Viewed"}, false},
		{"url from context.page.url", Match{URL: "/docs/*"}, true},
		{"url exact miss", Match{URL: "/docs"}, false},
		{"eq", Match{Conditions: []Condition{{Path: "properties.form_name", Op: OpEq, Value: "demo"}}}, true},
		{"eq miss", Match{Conditions: []Condition{{Path: "properties.form_name", Op: OpEq, Value: "contact"}}}, false},
		{"eq number", Match{Conditions: []Condition{{Path: "properties.seats", Op: OpEq, Value: "12.0"}}}, true},
		{"eq bool", Match{Conditions: []Condition{{Path: "properties.flag", Op: OpEq, Value: "true"}}}, true},
		{"eq missing", Match{Conditions: []Condition{{Path: "properties.nope", Op: OpEq, Value: ""}}}, false},
		{"array index", Match{Conditions: []Condition{{Path: "properties.products.1.sku", Op: OpEq, Value: "SKU-2"}}}, true},
		{"array index out of range", Match{Conditions: []Condition{{Path: "properties.products.2.sku", Op: OpExists, Value: ""}}}, false},
		{"ne", Match{Conditions: []Condition{{Path: "properties.form_name", Op: OpNe, Value: "contact"}}}, true},
		{"ne same", Match{Conditions: []Condition{{Path: "properties.form_name", Op: OpNe, Value: "demo"}}}, false},
		{"ne missing", Match{Conditions: []Condition{{Path: "properties.nope", Op: OpNe, Value: "demo"}}}, true},
		{"exists", Match{Conditions: []Condition{{Path: "traits.company", Op: OpExists, Value: ""}}}, true},
		{"exists null", Match{Conditions: []Condition{{Path: "properties.none", Op: OpExists, Value: ""}}}, false},
		{"exists false", Match{Conditions: []Condition{{Path: "properties.nope", Op: OpExists, Value: "false"}}}, true},
		{"prefix", Match{Conditions: []Condition{{Path: "context.page.url", Op: OpPrefix, Value: "https://example.com/"}}}, true},
		{"prefix miss", Match{Conditions: []Condition{{Path: "context.page.url", Op: OpPrefix, Value: "http://"}}}, false},
		{"glob", Match{Conditions: []Condition{{Path: "context.page.url", Op: OpGlob, Value: "*example.com/docs/*"}}}, true},
		{"regex", Match{Conditions: []Condition{{Path: "properties.plan", Op: OpRegex, Value: "^(pro|enterprise)$"}}}, true},
		{"regex on number", Match{Conditions: []Condition{{Path: "properties.seats", Op: OpRegex, Value: `^\d+$`}}}, true},
		{"regex on object", Match{Conditions: []Condition{{Path: "properties.products", Op: OpRegex, Value: "^SKU"}}}, false},
		{"gt numeric string", Match{Conditions: []Condition{{Path: "properties.revenue", Op: OpGt, Value: "100"}}}, true},
		{"gte", Match{Conditions: []Condition{{Path: "properties.seats", Op: OpGte, Value: "12"}}}, true},
		{"lt", Match{Conditions: []Condition{{Path: "properties.seats", Op: OpLt, Value: "12"}}}, false},
		{"lte", Match{Conditions: []Condition{{Path: "properties.seats", Op: OpLte, Value: "12"}}}, true},
		{"gt on text", Match{Conditions: []Condition{{Path: "properties.plan", Op: OpGt, Value: "0"}}}, false},
		{"all must hold", Match{Conditions: []Condition{{Path: "properties.form_name", Op: OpEq, Value: "demo"}, {Path: "properties.seats", Op: OpGt, Value: "100"}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet([]Rule{{Tenant: "acme", ID: "r", Enabled: true, Match: tc.m}})
			if err != nil {
				t.Fatal(err)
			}
			if _, got := s.Match("acme", ev); got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
			viaFields := &Event{Source: ev.Source, Type: ev.Type, Name: ev.Name, Fields: textFields{p}}
			if _, got := s.Match("acme", viaFields); got != tc.want {
				t.Fatalf("Match through a FieldReader = %v, want %v", got, tc.want)
			}
			viaFields.Fields = segFields{p}
			if _, got := s.Match("acme", viaFields); got != tc.want {
				t.Fatalf("Match through a SegmentReader = %v, want %v", got, tc.want)
			}
		})
	}
}

// textFields is a FieldReader like processor.Event: text of scalars, ok false for missing or null, canonical
// JSON for objects and arrays.
type textFields struct{ m map[string]any }

func (f textFields) Field(dot string) (string, bool) {
	p, err := parsePath(dot)
	if err != nil {
		return "", false
	}
	v, ok := p.Lookup(f.m)
	if !ok || v == nil {
		return "", false
	}
	if s, ok := srules.Text(v); ok {
		return s, true
	}
	b, _ := json.Marshal(v)
	return string(b), true
}

// segFields is a SegmentReader over the same map, walking pre-split segments like a parsed tree would.
type segFields struct{ m map[string]any }

func (f segFields) Field(dot string) (string, bool) { panic("Match must use FieldSegments") }

func (f segFields) FieldSegments(segs []string) (string, bool) {
	var v any = f.m
	for _, s := range segs {
		switch x := v.(type) {
		case map[string]any:
			v = x[s]
		case []any:
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n >= len(x) {
				return "", false
			}
			v = x[n]
		default:
			return "", false
		}
	}
	if v == nil {
		return "", false
	}
	if s, ok := srules.Text(v); ok {
		return s, true
	}
	return "{}", true
}

func TestMatchMapsFields(t *testing.T) {
	r := validRule()
	r.Map["name"] = "traits.name"
	r.Map["title"] = "traits.title"
	r.Map["fields.seats"] = "properties.seats"
	r.Map["fields.missing"] = "properties.nope"
	s, err := NewSet([]Rule{r})
	if err != nil {
		t.Fatal(err)
	}
	ev := &Event{Source: "segment", Type: "track", Name: "Form Submitted", Payload: payload(t, trackDemo)}
	got, ok := s.Match("acme", ev)
	want := Result{RuleID: "demo", Signal: "Demo Requested", Email: "jane@example.com", Fields: map[string]string{
		"name": "Jane", "title": "CTO", "company": "Example Inc", "plan": "pro", "seats": "12"}}
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Match = %+v, %v\nwant %+v", got, ok, want)
	}
	got, ok = s.Match("acme", &Event{Source: "segment", Type: "track", Name: "Form Submitted", Fields: textFields{ev.Payload}})
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Match through a FieldReader = %+v, %v\nwant %+v", got, ok, want)
	}
	if _, ok := s.Match("other", ev); ok {
		t.Fatal("a rule of acme matched another tenant's event")
	}
}

func TestMatchPriorityAndOrder(t *testing.T) {
	mk := func(id string, prio int32, event string, enabled bool) Rule {
		return Rule{Tenant: "acme", ID: id, Priority: prio, Enabled: enabled, Match: Match{Event: event}}
	}
	ev := &Event{Source: "segment", Type: "track", Name: "Form Submitted", Payload: map[string]any{}}
	for _, tc := range []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"higher priority wins", []Rule{mk("a", 1, "Form Submitted", true), mk("b", 5, "Form *", true)}, "b"},
		{"exact vs glob by priority", []Rule{mk("a", 9, "Form Submitted", true), mk("b", 5, "Form *", true)}, "a"},
		{"tie goes to smallest id", []Rule{mk("z", 3, "Form Submitted", true), mk("m", 3, "*", true), mk("q", 3, "Form Submitted", true)}, "m"},
		{"disabled never matches", []Rule{mk("a", 9, "Form Submitted", false), mk("b", 1, "", true)}, "b"},
		{"none", []Rule{mk("a", 9, "Other", true)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet(tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := s.Match("acme", ev)
			if got.RuleID != tc.want {
				t.Fatalf("winner %q, want %q", got.RuleID, tc.want)
			}
			if tc.want != "" && got.Signal != "Form Submitted" {
				t.Fatalf("signal %q: an empty rule signal keeps the event name", got.Signal)
			}
		})
	}
}

func TestMatchPageURL(t *testing.T) {
	s, err := NewSet([]Rule{
		{Tenant: "acme", ID: "pricing", Priority: 2, Enabled: true, Match: Match{Type: "page", URL: "/pricing"}, Signal: "Pricing Page Viewed"},
		{Tenant: "acme", ID: "docs", Priority: 1, Enabled: true, Match: Match{Type: "page", URL: "/docs/*"}, Signal: "Docs Viewed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url     string
		payload string
		want    string
	}{
		{"https://example.com/pricing", `{}`, "pricing"},
		{"https://example.com/pricing/?utm=1#top", `{}`, "pricing"},
		{"/pricing", `{}`, "pricing"},
		{"https://example.com/pricing-old", `{}`, ""},
		{"https://example.com/docs/a/b", `{}`, "docs"},
		{"https://example.com/docs", `{}`, ""},
		{"", `{"properties":{"url":"https://x.io/pricing"}}`, "pricing"},
		{"", `{"context":{"page":{"url":"https://x.io/docs/api"}}}`, "docs"},
		{"", `{"properties":{"path":"/docs/api"}}`, "docs"},
		{"", `{}`, ""},
	} {
		ev := &Event{Source: "segment", Type: "page", Name: "x", URL: tc.url, Payload: payload(t, tc.payload)}
		if got, _ := s.Match("acme", ev); got.RuleID != tc.want {
			t.Errorf("url %q payload %s: rule %q, want %q", tc.url, tc.payload, got.RuleID, tc.want)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		" Jane@Example.COM ": "jane@example.com", "true": "", "anonymous": "", "@x.io": "", "a@": "",
		"a@b@c": "", "a b@c.io": "", "x@y.io": "x@y.io",
	} {
		if got := srules.NormalizeEmail(in); got != want {
			t.Errorf("srules.NormalizeEmail(%q) = %q, want %q", in, got, want)
		}
	}
}

// A hostile pattern is bounded: RE2 matches in linear time, so the classic catastrophic backtracking case
// returns (this test would hang on a backtracking engine).
func TestRegexCatastrophicPatternIsLinear(t *testing.T) {
	s, err := NewSet([]Rule{{Tenant: "acme", ID: "evil", Enabled: true,
		Match: Match{Conditions: []Condition{{Path: "properties.v", Op: OpRegex, Value: "^(a+)+$"}, {Path: "properties.v", Op: OpRegex, Value: "(x+x+)+y"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	v := strings.Repeat("a", 30000) + "!"
	ev := &Event{Payload: map[string]any{"properties": map[string]any{"v": v}}}
	if _, ok := s.Match("acme", ev); ok {
		t.Fatal("matched")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"abc", "abc", true}, {"abc", "abcd", false}, {"*", "", true}, {"a*", "a", true}, {"a*a", "a", false},
		{"a*b*c", "aXbYc", true}, {"a*b*c", "acb", false}, {"*.pdf", "x.pdf", true}, {"/docs/*", "/docs/", true},
		{"**", "x", true}, {"a*b*b", "abab", true},
	} {
		g := compileGlob(tc.p)
		if got := g.match(tc.s); got != tc.want {
			t.Errorf("glob %q on %q = %v", tc.p, tc.s, got)
		}
	}
}

func TestBuildSkipsInvalid(t *testing.T) {
	bad := validRule()
	bad.ID = "bad"
	bad.Match.Conditions[0].Op = "nope"
	s, errs := Build([]Rule{validRule(), bad})
	if len(errs) != 1 || s.Len() != 1 {
		t.Fatalf("Build: %d rules, errors %v", s.Len(), errs)
	}
}

// procEvent stands in for processor.Event: the adapter must work with any event type.
type procEvent struct {
	source, typ, name string
	m                 map[string]any
}

func (p *procEvent) Field(path string) (string, bool) { return textFields{p.m}.Field(path) }

func TestMapperAdapter(t *testing.T) {
	s, err := NewSet([]Rule{validRule()})
	if err != nil {
		t.Fatal(err)
	}
	m := Mapper[*procEvent]{Rules: func() *Set { return s }, Event: func(p *procEvent) Event {
		return Event{Source: p.source, Type: p.typ, Name: p.name, Fields: p}
	}}
	var seam interface {
		Map(string, *procEvent) (string, string, map[string]string)
	} = m
	id, name, fields := seam.Map("acme", &procEvent{"segment", "track", "Form Submitted", payload(t, trackDemo)})
	want := map[string]string{"email": "jane@example.com", "company": "Example Inc", "plan": "pro"}
	if id != "demo" || name != "Demo Requested" || !reflect.DeepEqual(fields, want) {
		t.Fatalf("Map = %q %q %v", id, name, fields)
	}
	if id, _, _ := m.Map("acme", &procEvent{"segment", "track", "Other", payload(t, trackDemo)}); id != "" {
		t.Fatalf("unmatched event mapped by %q", id)
	}
}

// A rule set built to be as expensive as the limits allow (large counted repetitions on long values, in every
// rule) is cut off by the per-Match regex budget instead of taking seconds per event, and rules that need no
// regex still match.
func TestRegexBudget(t *testing.T) {
	var rs []Rule
	for i := range 100 {
		rs = append(rs, Rule{Tenant: "acme", ID: fmt.Sprintf("evil-%03d", i), Priority: 10, Enabled: true,
			Match: Match{Conditions: []Condition{{Path: "properties.v", Op: OpRegex, Value: Value(fmt.Sprintf("[a-z]{0,240}%d", i))}}}})
	}
	rs = append(rs, Rule{Tenant: "acme", ID: "plain", Priority: 1, Enabled: true,
		Match: Match{Conditions: []Condition{{Path: "properties.v", Op: OpPrefix, Value: "aaa"}}}})
	s, err := NewSet(rs)
	if err != nil {
		t.Fatal(err)
	}
	ev := &Event{Payload: map[string]any{"properties": map[string]any{"v": strings.Repeat("a", 32<<10)}}}
	before := RegexBudgetExhausted()
	got, ok := s.Match("acme", ev)
	if !ok || got.RuleID != "plain" {
		t.Fatalf("Match = %+v %v, want the plain rule", got, ok)
	}
	// Each regex costs 4097 bytes × ~480 instructions ≈ 2M units, over the 256K budget: none may run.
	if n := RegexBudgetExhausted() - before; n != 100 {
		t.Fatalf("%d regex conditions over budget, want 100", n)
	}
}

func TestConditionsCheapestFirst(t *testing.T) {
	s, err := NewSet([]Rule{{Tenant: "acme", ID: "r", Enabled: true, Match: Match{Conditions: []Condition{
		{Path: "a", Op: OpRegex, Value: "x"}, {Path: "b", Op: OpGlob, Value: "x*"}, {Path: "c", Op: OpEq, Value: "x"}, {Path: "d", Op: OpExists, Value: ""}}}}})
	if err != nil {
		t.Fatal(err)
	}
	tr := s.tenants["acme"]
	var ops []opcode
	for _, i := range tr.rules[0].conds {
		ops = append(ops, tr.conds[i].op)
	}
	if !reflect.DeepEqual(ops, []opcode{opExists, opEq, opGlob, opRegex}) {
		t.Fatalf("evaluation order %v", ops)
	}
}

func TestSetUpdateRebuildsOnlyChangedTenants(t *testing.T) {
	a, b := validRule(), validRule()
	b.Tenant = "beta"
	s, err := NewSet([]Rule{a, b})
	if err != nil {
		t.Fatal(err)
	}
	a2 := a
	a2.ID = "second"
	n, errs := s.update(map[string][]Rule{"acme": {a, a2}})
	if len(errs) > 0 || n.Len() != 3 || len(n.Rules("acme")) != 2 {
		t.Fatalf("update: %d rules, %v", n.Len(), errs)
	}
	if n.tenants["beta"] != s.tenants["beta"] {
		t.Fatal("an unchanged tenant was rebuilt")
	}
	if s.Len() != 2 {
		t.Fatal("update changed the old Set")
	}
	n, _ = n.update(map[string][]Rule{"beta": {}})
	if n.Tenants() == nil || len(n.Tenants()) != 1 || n.Len() != 2 {
		t.Fatalf("removing a tenant: %v, %d", n.Tenants(), n.Len())
	}
}
