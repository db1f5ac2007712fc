package rules

import (
	"reflect"
	"strings"
	"testing"
)

const yamlRule = `
tenant: acme
id: demo
name: Demo requested
priority: 10
match:
  source: segment
  type: track
  event: Form Submitted
  conditions:
    - {path: properties.form_name, op: eq, value: demo}
    - {path: properties.revenue, op: gte, value: 100}
signal: Demo Requested
map:
  email: properties.email
  company: traits.company
`

const jsonRule = `{"tenant":"acme","id":"demo","name":"Demo requested","priority":10,
 "match":{"source":"segment","type":"track","event":"Form Submitted","conditions":[
   {"path":"properties.form_name","op":"eq","value":"demo"},{"path":"properties.revenue","op":"gte","value":100}]},
 "signal":"Demo Requested","map":{"email":"properties.email","company":"traits.company"}}`

func TestParse(t *testing.T) {
	want := Rule{Tenant: "acme", ID: "demo", Name: "Demo requested", Priority: 10, Enabled: true,
		Match: Match{Source: "segment", Type: "track", Event: "Form Submitted", Conditions: []Condition{
			{Path: "properties.form_name", Op: "eq", Value: "demo"}, {Path: "properties.revenue", Op: "gte", Value: "100"}}},
		Signal: "Demo Requested", Map: map[string]string{"email": "properties.email", "company": "traits.company"}}
	for _, tc := range []struct {
		name string
		doc  string
		n    int
	}{
		{"yaml object", yamlRule, 1},
		{"json object", jsonRule, 1},
		{"json list", "[" + jsonRule + "," + jsonRule + "]", 2},
		{"json wrapper", `{"rules":[` + jsonRule + `]}`, 1},
		{"yaml list", "- " + strings.ReplaceAll(strings.TrimSpace(yamlRule), "\n", "\n  ") + "\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(rs) != tc.n {
				t.Fatalf("got %d rules, want %d", len(rs), tc.n)
			}
			if !reflect.DeepEqual(rs[0], want) {
				t.Fatalf("got  %+v\nwant %+v", rs[0], want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ name, doc, msg string }{
		{"empty", "  ", "empty"},
		{"unknown field", `{"tenant":"acme","id":"x","match":{"evnt":"x"}}`, `unknown field "evnt"`},
		{"bad yaml", "tenant: [", "yaml"},
		{"object value", `{"tenant":"a","id":"x","match":{"conditions":[{"path":"a","op":"eq","value":{"x":1}}]}}`, "string, number or boolean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Parse = %v, want an error containing %q", err, tc.msg)
			}
		})
	}
}

func TestParseEnabledDefault(t *testing.T) {
	rs, err := Parse([]byte("tenant: a\nid: x\nenabled: false\n"))
	if err != nil || rs[0].Enabled {
		t.Fatalf("Parse = %+v, %v; want disabled", rs, err)
	}
}

func TestEncodeYAMLRoundTrip(t *testing.T) {
	r := validRule()
	y, err := EncodeYAML([]Rule{r})
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(y)
	if err != nil {
		t.Fatalf("Parse(EncodeYAML): %v\n%s", err, y)
	}
	if !reflect.DeepEqual(back[0], r) {
		t.Fatalf("round trip:\n%s\ngot %+v", y, back[0])
	}
}
