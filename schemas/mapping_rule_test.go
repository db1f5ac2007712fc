package schemas

import (
	"reflect"
	"testing"
	"time"
)

func TestMappingRuleRoundTrip(t *testing.T) {
	in := MappingRule{Tenant: "acme", ID: "demo", Name: "Demo", Priority: -3, Enabled: true, Source: SourceSegment,
		Type: "track", Event: "Form *", URL: "/docs/*",
		Conditions: []RuleCondition{{Path: "properties.form_name", Op: "eq", Value: "demo"}},
		Signal:     "Demo Requested", Map: map[string]string{"email": "properties.email"},
		UpdatedAt: time.UnixMilli(1_700_000_000_123).UTC()}
	b, err := MappingRules.Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out MappingRule
	if err := MappingRules.Decode(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
}
