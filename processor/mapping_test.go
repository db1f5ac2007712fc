package processor

import (
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/processor/rules"
	"github.com/signalstage/signalstage/schemas"
)

func TestFieldArrayIndex(t *testing.T) {
	payload := `{"type":"track","anonymousId":"a","event":"Order","products":[{"sku":"ENT-1","n":2},{"sku":"X"}],` +
		`"tags":["a",null,3],"properties":{"0":"zero","list":[[1,2],{"k":"v"}]}}`
	e := &Event{RawEvent: *edgeRaw(t, "t", payload, time.Now())}
	for _, tc := range []struct {
		path, want string
		ok         bool
	}{
		{"products.0.sku", "ENT-1", true},
		{"products.1.sku", "X", true},
		{"products.0.n", "2", true},
		{"products.2.sku", "", false},  // out of range
		{"products.-1.sku", "", false}, // negative
		{"products.+0.sku", "", false}, // not a plain index
		{"products.x.sku", "", false},  // a name on an array
		{"products.0", `{"n":2,"sku":"ENT-1"}`, true},
		{"tags.0", "a", true},
		{"tags.1", "", false}, // null
		{"tags.2", "3", true},
		{"properties.0", "zero", true}, // on an object a number is a key
		{"properties.list.0.1", "2", true},
		{"properties.list.1.k", "v", true},
	} {
		got, ok := e.Field(tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Field(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
		got, ok = e.FieldSegments(strings.Split(tc.path, "."))
		if got != tc.want || ok != tc.ok {
			t.Errorf("FieldSegments(%q) = %q, %v; want %q, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// staticMapper maps with a fixed rule set, through the same adapter the processor uses.
func staticMapper(t *testing.T, src string) Mapper {
	t.Helper()
	rs, err := rules.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parsing rules: %v", err)
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		t.Fatalf("building rules: %v", err)
	}
	return rules.Mapper[*Event]{Rules: func() *rules.Set { return set }, Event: RuleEvent}
}

const demoRule = `
tenant: acme
id: demo
priority: 10
match:
  type: track
  event: Form Submitted
  conditions:
    - {path: properties.form_name, op: eq, value: demo}
signal: Demo Requested
map:
  email: properties.work_email # not one of the email fields the processor reads by itself
  company: properties.company
  title: properties.title
`

const skuRule = `
tenant: acme
id: enterprise-order
match:
  event: Order
  conditions:
    - {path: products.0.sku, op: prefix, value: "ENT-"}
signal: Enterprise Order
`

// A rule's email links the visitor like an identify: earlier cold page views are rehydrated to the lead, and
// the rule's enrichment fields are in the signal's Mapped map (the sink's leads view reads them from there).
func TestCoreRuleLinksAndRehydrates(t *testing.T) {
	r := newRig(t, func(c *CoreConfig) { c.Mapper = staticMapper(t, demoRule) })
	for _, u := range []string{"/pricing", "/docs"} {
		got := r.event("acme", `{"type":"page","anonymousId":"v1","properties":{"url":"https://x.io`+u+`"}}`)
		if len(got) != 1 || got[0].Status != schemas.StatusCold || got[0].RuleID != "" {
			t.Fatalf("page view: %+v", got)
		}
	}
	other := r.event("acme", `{"type":"track","anonymousId":"v1","event":"Form Submitted","properties":{"form_name":"newsletter","work_email":"x@y.io"}}`)
	if len(other) != 1 || other[0].RuleID != "" || other[0].MappedName != "" || other[0].Status != schemas.StatusCold {
		t.Fatalf("another form is mapped: %+v", other)
	}
	n := len(r.em.signals)
	r.event("acme", `{"type":"track","anonymousId":"v2","event":"Form Submitted","properties":{"form_name":"demo",`+
		`"work_email":" Jane@Example.com","company":"Acme","title":"CTO"}}`)
	got := r.em.signals[n:]
	if len(got) != 1 {
		t.Fatalf("got %d signals for a new visitor's demo request, want 1", len(got))
	}
	s := got[0]
	if s.RuleID != "demo" || s.MappedName != "Demo Requested" || s.Status != schemas.StatusLinked || s.Email != "jane@example.com" {
		t.Errorf("demo request: rule %q name %q status %q email %q", s.RuleID, s.MappedName, s.Status, s.Email)
	}
	if s.Mapped["company"] != "Acme" || s.Mapped["title"] != "CTO" || s.Mapped["email"] != "jane@example.com" {
		t.Errorf("mapped fields: %v", s.Mapped)
	}
	if len(r.em.links) != 1 || r.em.links[0].Email != "jane@example.com" || r.em.links[0].ID != "v2" {
		t.Errorf("links: %+v", r.em.links)
	}

	// v1's page views were cold: the form rule (not the newsletter) identifies v1 now and rehydrates them.
	n = len(r.em.signals)
	r.event("acme", `{"type":"track","anonymousId":"v1","event":"Form Submitted","properties":{"form_name":"demo","work_email":"bob@b.io"}}`)
	got = r.em.signals[n:]
	var rehydrated int
	for _, s := range got {
		if s.Status != schemas.StatusLinked || s.Email != "bob@b.io" {
			t.Errorf("after the rule's email: %s %s status %q email %q", s.Type, s.Event, s.Status, s.Email)
		}
		if versionCount(s.Version) > 1 {
			rehydrated++
		}
	}
	if rehydrated != 3 { // two page views and the newsletter form
		t.Errorf("rehydrated %d held signals, want 3 (got %d signals)", rehydrated, len(got))
	}
}

func TestCoreRuleArrayPath(t *testing.T) {
	r := newRig(t, func(c *CoreConfig) { c.Mapper = staticMapper(t, skuRule) })
	for _, tc := range []struct {
		payload, rule string
	}{
		{`{"type":"track","anonymousId":"a","event":"Order","products":[{"sku":"ENT-9"}]}`, "enterprise-order"},
		{`{"type":"track","anonymousId":"a","event":"Order","products":[{"sku":"SMB-1"},{"sku":"ENT-9"}]}`, ""},
		{`{"type":"track","anonymousId":"a","event":"Order","products":{"0":{"sku":"ENT-9"}}}`, "enterprise-order"},
	} {
		got := r.event("acme", tc.payload)
		if len(got) != 1 || got[0].RuleID != tc.rule {
			t.Errorf("%s: rule %q, want %q", tc.payload, got[0].RuleID, tc.rule)
		}
	}
}
