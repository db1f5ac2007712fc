package rules

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	gojson "github.com/goccy/go-json"
)

// benchRules returns 100 rules of one tenant shaped like a real tenant's: 50 track rules on distinct event
// names with a condition each, 30 page rules on URL patterns, 15 glob-named rules with conditions, 5 catch-alls
// with regex conditions.
func benchRules(tenant string) []Rule {
	var rs []Rule
	for i := range 50 {
		rs = append(rs, Rule{Tenant: tenant, ID: fmt.Sprintf("track-%02d", i), Priority: int32(100 - i), Enabled: true,
			Match: Match{Source: "segment", Type: "track", Event: fmt.Sprintf("Event %d", i),
				Conditions: []Condition{{Path: "properties.form_name", Op: OpEq, Value: Value(fmt.Sprint("form", i))}}},
			Signal: fmt.Sprint("Signal ", i), Map: map[string]string{"email": "properties.email", "company": "traits.company"}})
	}
	for i := range 30 {
		rs = append(rs, Rule{Tenant: tenant, ID: fmt.Sprintf("page-%02d", i), Priority: int32(50 - i), Enabled: true,
			Match: Match{Type: "page", URL: fmt.Sprintf("/section%d/*", i)}, Signal: fmt.Sprint("Page ", i)})
	}
	for i := range 15 {
		rs = append(rs, Rule{Tenant: tenant, ID: fmt.Sprintf("glob-%02d", i), Priority: int32(20 - i), Enabled: true,
			Match: Match{Event: fmt.Sprintf("Feature %d *", i), Conditions: []Condition{
				{Path: "properties.plan", Op: OpEq, Value: "enterprise"}, {Path: "properties.seats", Op: OpGte, Value: "10"}}}})
	}
	for i := range 5 {
		rs = append(rs, Rule{Tenant: tenant, ID: fmt.Sprintf("any-%02d", i), Priority: int32(-i), Enabled: true,
			Match: Match{Conditions: []Condition{{Path: "context.page.url", Op: OpRegex, Value: Value(fmt.Sprintf(`/campaign-%d\b`, i))}}}})
	}
	return rs
}

// worstRules are 100 rules that every event must evaluate in full: no event name, the same type, three
// conditions each on shared paths, none of them matching the benchmark event.
func worstRules(tenant string) []Rule {
	var rs []Rule
	for i := range 100 {
		rs = append(rs, Rule{Tenant: tenant, ID: fmt.Sprintf("w-%03d", i), Priority: int32(i), Enabled: true,
			Match: Match{Source: "segment", Type: "page", Conditions: []Condition{
				{Path: "context.page.url", Op: OpPrefix, Value: "https://example.com/"},
				{Path: "properties.category", Op: OpExists},
				{Path: "context.page.path", Op: OpGlob, Value: Value(fmt.Sprintf("/p%d/*", i))}}}})
	}
	return rs
}

const benchTrack = `{"anonymousId":"3d4f1c2a-1b2c-4d5e-8f90-1234567890ab","context":{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"4.1.0"},"page":{"path":"/pricing","url":"https://example.com/pricing"}},"event":"Event 40","messageId":"ajs-next-1700000000000-abc","properties":{"email":"Jane@Example.com","form_name":"form40","plan":"pro"},"timestamp":"2026-11-30T05:00:00.000Z","traits":{"company":"Example Inc"},"type":"track"}`

const benchPage = `{"anonymousId":"3d4f1c2a-1b2c-4d5e-8f90-1234567890ab","context":{"ip":"203.0.113.7","page":{"path":"/blog/post-1","url":"https://example.com/blog/post-1"}},"messageId":"ajs-next-1700000000000-abd","name":"Blog","properties":{"url":"https://example.com/blog/post-1","category":"blog"},"timestamp":"2026-11-30T05:00:00.000Z","type":"page"}`

func benchSet(b *testing.B, tenants int, rules func(string) []Rule) *Set {
	var all []Rule
	for i := range tenants {
		all = append(all, rules(fmt.Sprint("tenant-", i))...)
	}
	s, err := NewSet(all)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func BenchmarkMatch(b *testing.B) {
	for _, bc := range []struct {
		name    string
		tenants int
		rules   func(string) []Rule
		ev      Event
		raw     string
		want    string
	}{
		{"track-hit-maps-email", 1, benchRules, Event{Source: "segment", Type: "track", Name: "Event 40"}, benchTrack, "track-40"},
		{"page-miss-100-rules", 1, benchRules, Event{Source: "segment", Type: "page", Name: "Blog"}, benchPage, ""},
		{"page-miss-100-rules-1000-tenants", 1000, benchRules, Event{Source: "segment", Type: "page", Name: "Blog"}, benchPage, ""},
		{"worst-300-conditions-miss", 1, worstRules, Event{Source: "segment", Type: "page", Name: "Blog"}, benchPage, ""},
	} {
		for _, via := range []string{"map", "fieldreader", "segmentreader"} {
			b.Run(bc.name+"/"+via, func(b *testing.B) {
				s := benchSet(b, bc.tenants, bc.rules)
				ev := bc.ev
				ev.Payload = payload(b, bc.raw)
				if via == "fieldreader" {
					// Like processor.Event.Field: split the dot path and walk the parsed tree on every call.
					ev.Fields, ev.Payload = textFields{ev.Payload}, nil
				}
				if got, _ := s.Match("tenant-0", &ev); got.RuleID != bc.want {
					b.Fatalf("winner %q, want %q", got.RuleID, bc.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					s.Match("tenant-0", &ev)
				}
			})
		}
	}
}

// BenchmarkDecode measures what it costs to get the map Match needs from the raw event bytes, to compare with
// the cost of matching itself: the processor decodes once and passes the map.
func BenchmarkDecode(b *testing.B) {
	raw := []byte(benchTrack)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy-go-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if err := gojson.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkBuild measures compiling a whole rule set, what the Watcher does for a change.
func BenchmarkBuild(b *testing.B) {
	for _, tenants := range []int{1, 100} {
		var all []Rule
		for i := range tenants {
			all = append(all, benchRules(fmt.Sprint("tenant-", i))...)
		}
		b.Run(fmt.Sprintf("%d-rules", len(all)), func(b *testing.B) {
			for b.Loop() {
				if _, errs := Build(all); len(errs) > 0 {
					b.Fatal(errs)
				}
			}
		})
	}
}

// BenchmarkHostileRegex is the most a tenant's regexes can cost one event: 100 rules whose patterns are as
// expensive as validation allows, on a value sized so that the regex budget is spent in full.
func BenchmarkHostileRegex(b *testing.B) {
	var rs []Rule
	for i := range 100 {
		rs = append(rs, Rule{Tenant: "t", ID: fmt.Sprintf("evil-%03d", i), Enabled: true,
			Match: Match{Conditions: []Condition{{Path: "properties.v", Op: OpRegex, Value: Value(fmt.Sprintf("[a-z]{0,240}%d", i))}}}})
	}
	s, err := NewSet(rs)
	if err != nil {
		b.Fatal(err)
	}
	insts := s.tenants["t"].conds[0].reInsts
	ev := &Event{Payload: map[string]any{"properties": map[string]any{"v": strings.Repeat("a", regexBudget/insts-1)}}}
	for b.Loop() {
		s.Match("t", ev)
	}
}
