package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/signalstage/signalstage/processor/rules"
)

// benchTenantRules are 100 rules shaped like a real tenant's (as in processor/rules' benchmarks): 50 track rules
// on distinct event names with a condition and email/company mapping, 30 page URL rules, 15 glob-named rules
// with two conditions, 5 catch-alls with a regex on context.page.url.
func benchTenantRules(tenant string) []rules.Rule {
	var rs []rules.Rule
	for i := range 50 {
		rs = append(rs, rules.Rule{Tenant: tenant, ID: fmt.Sprintf("track-%02d", i), Priority: int32(100 - i), Enabled: true,
			Match: rules.Match{Source: "segment", Type: "track", Event: fmt.Sprintf("Event %d", i),
				Conditions: []rules.Condition{{Path: "properties.form_name", Op: rules.OpEq, Value: rules.Value(fmt.Sprint("form", i))}}},
			Signal: fmt.Sprint("Signal ", i), Map: map[string]string{"email": "properties.email", "company": "traits.company"}})
	}
	for i := range 30 {
		rs = append(rs, rules.Rule{Tenant: tenant, ID: fmt.Sprintf("page-%02d", i), Priority: int32(50 - i), Enabled: true,
			Match: rules.Match{Type: "page", URL: fmt.Sprintf("/section%d/*", i)}, Signal: fmt.Sprint("Page ", i)})
	}
	for i := range 15 {
		rs = append(rs, rules.Rule{Tenant: tenant, ID: fmt.Sprintf("glob-%02d", i), Priority: int32(20 - i), Enabled: true,
			Match: rules.Match{Event: fmt.Sprintf("Feature %d *", i), Conditions: []rules.Condition{
				{Path: "properties.plan", Op: rules.OpEq, Value: "enterprise"}, {Path: "properties.seats", Op: rules.OpGte, Value: "10"}}}})
	}
	for i := range 5 {
		rs = append(rs, rules.Rule{Tenant: tenant, ID: fmt.Sprintf("any-%02d", i), Priority: int32(-i), Enabled: true,
			Match: rules.Match{Conditions: []rules.Condition{{Path: "context.page.url", Op: rules.OpRegex, Value: rules.Value(fmt.Sprintf(`/campaign-%d\b`, i))}}}})
	}
	return rs
}

// BenchmarkMapEvent: the processor's mapping cost per event with 100 rules for the event's tenant, through the
// processor's own parsed Event (FieldSegments on the tree it already has: no re-parsing), as the core calls it.
func BenchmarkMapEvent(b *testing.B) {
	set, err := rules.NewSet(benchTenantRules("acme"))
	if err != nil {
		b.Fatal(err)
	}
	m := rules.Mapper[*Event]{Rules: func() *rules.Set { return set }, Event: RuleEvent}
	for _, bc := range []struct{ name, payload, want string }{
		{"track-hit", `{"anonymousId":"3d4f1c2a-1b2c-4d5e-8f90-1234567890ab","context":{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"4.1.0"},"page":{"path":"/pricing","url":"https://example.com/pricing"}},"event":"Event 40","messageId":"ajs-next-1700000000000-abc","properties":{"email":"Jane@Example.com","form_name":"form40","plan":"pro"},"timestamp":"2026-11-30T05:00:00.000Z","traits":{"company":"Example Inc"},"type":"track"}`, "track-40"},
		{"page-miss", `{"anonymousId":"3d4f1c2a-1b2c-4d5e-8f90-1234567890ab","context":{"ip":"203.0.113.7","page":{"path":"/blog/post-1","url":"https://example.com/blog/post-1"}},"messageId":"ajs-next-1700000000000-abd","name":"Blog","properties":{"url":"https://example.com/blog/post-1","category":"blog"},"timestamp":"2026-11-30T05:00:00.000Z","type":"page"}`, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var r eventReader
			ev, err := r.read(edgeRaw(b, "acme", bc.payload, time.Now()))
			if err != nil {
				b.Fatal(err)
			}
			if id, _, _ := m.Map("acme", ev); id != bc.want {
				b.Fatalf("rule %q, want %q", id, bc.want)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				m.Map("acme", ev)
			}
		})
	}
}
