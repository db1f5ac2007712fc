package rules

import (
	"errors"
	"strings"
	"testing"
)

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

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		edit   func(r *Rule)
		field  string // "" means valid
		target error
		msg    string // substring of the message
	}{
		{"valid", func(r *Rule) {}, "", nil, ""},
		{"valid every op", func(r *Rule) {
			r.Match.Conditions = []Condition{
				{Path: "products.0.sku", Op: OpEq, Value: "x"}, {Path: "a", Op: OpNe, Value: ""},
				{Path: "a", Op: OpExists}, {Path: "a", Op: OpExists, Value: "false"},
				{Path: "context.page.url", Op: OpPrefix, Value: "https://"}, {Path: "a", Op: OpGlob, Value: "/docs/*"},
				{Path: "a", Op: OpRegex, Value: "^de(mo)+$"}, {Path: "a", Op: OpGt, Value: "1"},
				{Path: "a", Op: OpGte, Value: "-1.5"}, {Path: "a", Op: OpLt, Value: "1e3"}, {Path: "a", Op: OpLte, Value: "0"},
			}
			r.Match.Source = "any"
			r.Match.URL = "/docs/*"
		}, "", nil, ""},
		{"missing tenant", func(r *Rule) { r.Tenant = "" }, "tenant", ErrInvalid, "missing"},
		{"tenant with separator", func(r *Rule) { r.Tenant = "a|b" }, "tenant", ErrInvalid, `"a|b"`},
		{"missing id", func(r *Rule) { r.ID = "" }, "id", ErrInvalid, "missing"},
		{"id with slash", func(r *Rule) { r.ID = "a/b" }, "id", ErrInvalid, `"a/b"`},
		{"id too long", func(r *Rule) { r.ID = strings.Repeat("a", 129) }, "id", ErrInvalid, "longer"},
		{"unknown source", func(r *Rule) { r.Match.Source = "hubspot" }, "match.source", ErrInvalid, "hubspot"},
		{"url not a path", func(r *Rule) { r.Match.URL = "pricing" }, "match.url", ErrInvalid, "path pattern"},
		{"empty path", func(r *Rule) { r.Match.Conditions[0].Path = "" }, "match.conditions[0].path", ErrBadPath, "empty"},
		{"double dot", func(r *Rule) { r.Match.Conditions[0].Path = "properties..form" }, "match.conditions[0].path", ErrBadPath, "empty segment"},
		{"trailing dot", func(r *Rule) { r.Match.Conditions[0].Path = "properties." }, "match.conditions[0].path", ErrBadPath, "empty segment"},
		{"bracket index", func(r *Rule) { r.Match.Conditions[0].Path = "products[0].sku" }, "match.conditions[0].path", ErrBadPath, "not allowed"},
		{"too many segments", func(r *Rule) { r.Match.Conditions[0].Path = strings.Repeat("a.", 16) + "a" }, "match.conditions[0].path", ErrBadPath, "segments"},
		{"unknown op", func(r *Rule) { r.Match.Conditions[0].Op = "equals" }, "match.conditions[0].op", ErrUnknownOp, `"equals"`},
		{"bad regex", func(r *Rule) { r.Match.Conditions[0] = Condition{Path: "a", Op: OpRegex, Value: "de(mo"} }, "match.conditions[0].value", ErrBadRegex, "missing closing )"},
		{"perl lookahead", func(r *Rule) { r.Match.Conditions[0] = Condition{Path: "a", Op: OpRegex, Value: "(?=x)"} }, "match.conditions[0].value", ErrBadRegex, ""},
		{"regex too long", func(r *Rule) {
			r.Match.Conditions[0] = Condition{Path: "a", Op: OpRegex, Value: Value(strings.Repeat("a", 513))}
		}, "match.conditions[0].value", ErrBadRegex, "longer than 512"},
		{"regex program too big", func(r *Rule) {
			r.Match.Conditions[0] = Condition{Path: "a", Op: OpRegex, Value: "((a{100}){100}){100}"}
		}, "match.conditions[0].value", ErrBadRegex, ""},
		{"regex program over cap", func(r *Rule) {
			r.Match.Conditions[0] = Condition{Path: "a", Op: OpRegex, Value: "[a-z]{1000}x{1000}"}
		}, "match.conditions[0].value", ErrBadRegex, "instructions"},
		{"numeric op without number", func(r *Rule) { r.Match.Conditions[0] = Condition{Path: "a", Op: OpGt, Value: "many"} }, "match.conditions[0].value", ErrInvalid, "needs a number"},
		{"exists with value", func(r *Rule) { r.Match.Conditions[0] = Condition{Path: "a", Op: OpExists, Value: "x"} }, "match.conditions[0].value", ErrInvalid, "exists"},
		{"empty glob", func(r *Rule) { r.Match.Conditions[0] = Condition{Path: "a", Op: OpGlob} }, "match.conditions[0].value", ErrInvalid, "glob"},
		{"unknown map target", func(r *Rule) { r.Map["phone_number"] = "traits.phone" }, "map.phone_number", ErrUnknownTarget, "fields.<name>"},
		{"field target colliding", func(r *Rule) { r.Map["fields.email"] = "traits.email" }, "map.fields.email", ErrUnknownTarget, ""},
		{"bad map path", func(r *Rule) { r.Map["email"] = "traits..email" }, "map.email", ErrBadPath, "empty segment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := validRule()
			tc.edit(&r)
			err := Validate(&r)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			if fe.Field != tc.field || !errors.Is(fe, tc.target) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate = %v (field %q), want field %q, %v", err, fe.Field, tc.field, tc.target)
			}
			if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("message %q does not name %q or say %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestValidateAllDuplicateID(t *testing.T) {
	a, b, c := validRule(), validRule(), validRule()
	c.Tenant = "other" // same id under another tenant is fine
	err := ValidateAll([]Rule{a, b, c})
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrDuplicateID) || fe.Field != "id" {
		t.Fatalf("ValidateAll = %v, want a duplicate id error on field id", err)
	}
	if !strings.Contains(err.Error(), `rule acme/demo: id: duplicate rule id: "demo" is also rule #1`) {
		t.Fatalf("message %q", err)
	}
	if err := ValidateAll([]Rule{a, c}); err != nil {
		t.Fatalf("ValidateAll distinct tenants: %v", err)
	}
}
