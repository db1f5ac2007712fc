package rules

import (
	"errors"
	"testing"
)

// validRule is a complete rule every test starts from (as in schemas/rules' tests).
func validRule() Rule {
	return Rule{
		Tenant: "acme", ID: "demo", Name: "Demo requested", Priority: 10, Enabled: true,
		Match: Match{Source: "segment", Type: "track", Event: "Form Submitted", Conditions: []Condition{
			{Path: "properties.form_name", Op: OpEq, Value: "demo"},
		}},
		Signal: "Demo Requested",
		Map:    map[string]string{"email": "properties.email", "company": "traits.company", "fields.plan": "properties.plan"},
	}
}

// TestNewSetRefusesDuplicateID: the compiled Set validates the whole list as schemas/rules.ValidateAll does.
func TestNewSetRefusesDuplicateID(t *testing.T) {
	if _, err := NewSet([]Rule{validRule(), validRule()}); !errors.Is(err, ErrDuplicateID) {
		t.Fatalf("NewSet with duplicates = %v", err)
	}
}
