// Package rules is signal mapping: per-tenant rules that match Segment and webhook events (source, type, event
// name, page URL pattern, conditions on dot paths) and map fields of the event into the signal (email for lead
// identification, name, company, title and other enrichment fields, and a mapped signal name).
//
// Rules are validated once (Validate), compiled into an immutable Set, and matched per event without
// allocating unless a rule maps fields. They live on the compacted signals.rules topic: Publisher writes them,
// Watcher reads the whole topic and swaps in a new Set on every change. Command and NewHandler are the CLI and
// HTTP management surfaces the processor binary wires.
package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// Rule is one mapping rule as written in rule files (JSON or YAML), returned by the HTTP API and stored (as a
// schemas.MappingRule) on the rules topic.
type Rule struct {
	// Tenant owns the rule; rules of one tenant never see another tenant's events.
	Tenant string `json:"tenant"`
	// ID is unique per tenant: [A-Za-z0-9][A-Za-z0-9._-]*, at most 128 characters.
	ID string `json:"id"`
	// Name is a label for people.
	Name string `json:"name,omitempty"`
	// Priority orders rules: when several match, the highest priority wins; ties go to the smallest ID.
	Priority int32 `json:"priority"`
	// Enabled rules match; disabled ones are kept and listed but never match. Files default to true.
	Enabled bool `json:"enabled"`
	// Match selects the events the rule applies to; every part given must hold.
	Match Match `json:"match"`
	// Signal is the mapped signal name; empty keeps the event name.
	Signal string `json:"signal,omitempty"`
	// Map maps targets to dot paths of the event: email, name, company, title, or fields.<name> for any other
	// enrichment field.
	Map map[string]string `json:"map,omitempty"`
	// UpdatedAt is set by Publisher when the rule is applied.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Match is the selecting part of a rule. Empty fields match anything.
type Match struct {
	// Source is segment, webhook, or any (the same as empty).
	Source string `json:"source,omitempty"`
	// Type is the call type (track, page, identify, screen, group, alias) or webhook.
	Type string `json:"type,omitempty"`
	// Event is the event name, exact or a glob where * matches any run of characters.
	Event string `json:"event,omitempty"`
	// URL is a page URL path pattern such as /pricing or /docs/*, matched against the path of the event's
	// URL (scheme, host, query and a trailing slash ignored).
	URL string `json:"url,omitempty"`
	// Conditions must all hold.
	Conditions []Condition `json:"conditions,omitempty"`
}

// Condition compares the value at a dot path of the event with Value using Op.
type Condition struct {
	// Path is a dot path into the event JSON: properties.form_name, context.page.url, products.0.sku.
	Path string `json:"path"`
	// Op is one of the Op* constants.
	Op string `json:"op"`
	// Value is the operand; files may write it as a string, number or boolean.
	Value Value `json:"value,omitempty"`
}

// Value is a condition operand kept as text; it decodes from a JSON string, number or boolean so that rule
// files can write `value: 100` as naturally as `value: demo`.
type Value string

// UnmarshalJSON accepts a JSON string, number, boolean or null.
func (v *Value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = Value(s)
	case bytes.Equal(b, []byte("null")):
		*v = ""
	case bytes.Equal(b, []byte("true")), bytes.Equal(b, []byte("false")):
		*v = Value(b)
	default:
		if _, err := strconv.ParseFloat(string(b), 64); err != nil {
			return fmt.Errorf("value must be a string, number or boolean, got %s", b)
		}
		*v = Value(b)
	}
	return nil
}

// Condition operators.
const (
	OpEq     = "eq"     // equal: numerically when both sides are numbers, else as text
	OpNe     = "ne"     // not equal (also true when the field is missing)
	OpExists = "exists" // present and not null; value false inverts it
	OpPrefix = "prefix" // text starts with value
	OpGlob   = "glob"   // text matches a glob where * matches any run of characters
	OpRegex  = "regex"  // text matches a Go RE2 regular expression (unanchored; use ^ and $)
	OpGt     = "gt"     // number greater than value
	OpGte    = "gte"    // number greater than or equal to value
	OpLt     = "lt"     // number less than value
	OpLte    = "lte"    // number less than or equal to value
)

// Operators lists every condition operator, for messages and documentation.
var Operators = []string{OpEq, OpNe, OpExists, OpPrefix, OpGlob, OpRegex, OpGt, OpGte, OpLt, OpLte}

// Map targets besides fields.<name>.
const (
	TargetEmail   = "email"
	TargetName    = "name"
	TargetCompany = "company"
	TargetTitle   = "title"
	// TargetFieldPrefix starts an arbitrary enrichment target: fields.plan maps into the field "plan".
	TargetFieldPrefix = "fields."
)

// Key returns the rules topic key of the rule, tenant|id.
func (r *Rule) Key() []byte { return schemas.RoutingKey(r.Tenant, r.ID) }

// Record converts the rule to its wire form.
func (r *Rule) Record() *schemas.MappingRule {
	rec := &schemas.MappingRule{
		Tenant: r.Tenant, ID: r.ID, Name: r.Name, Priority: r.Priority, Enabled: r.Enabled,
		Source: r.Match.Source, Type: r.Match.Type, Event: r.Match.Event, URL: r.Match.URL,
		Conditions: make([]schemas.RuleCondition, len(r.Match.Conditions)),
		Signal:     r.Signal, Map: map[string]string{}, UpdatedAt: r.UpdatedAt,
	}
	for i, c := range r.Match.Conditions {
		rec.Conditions[i] = schemas.RuleCondition{Path: c.Path, Op: c.Op, Value: string(c.Value)}
	}
	for k, v := range r.Map {
		rec.Map[k] = v
	}
	return rec
}

// FromRecord converts a wire record back into a Rule.
func FromRecord(rec *schemas.MappingRule) Rule {
	r := Rule{
		Tenant: rec.Tenant, ID: rec.ID, Name: rec.Name, Priority: rec.Priority, Enabled: rec.Enabled,
		Match:  Match{Source: rec.Source, Type: rec.Type, Event: rec.Event, URL: rec.URL},
		Signal: rec.Signal, UpdatedAt: rec.UpdatedAt,
	}
	for _, c := range rec.Conditions {
		r.Match.Conditions = append(r.Match.Conditions, Condition{Path: c.Path, Op: c.Op, Value: Value(c.Value)})
	}
	if len(rec.Map) > 0 {
		r.Map = make(map[string]string, len(rec.Map))
		for k, v := range rec.Map {
			r.Map[k] = v
		}
	}
	return r
}

func sortStrings(s []string) { sort.Strings(s) }
