package schemas

import "time"

// MappingRule is one signal mapping rule of a tenant as stored on the compacted signals.rules topic, keyed
// RoutingKey(tenant, id); a tombstone (nil value) deletes it. processor/rules validates and compiles it; this type
// is only the wire contract.
type MappingRule struct {
	Tenant     string            `avro:"tenant"`
	ID         string            `avro:"id"`
	Name       string            `avro:"name"`
	Priority   int32             `avro:"priority"`
	Enabled    bool              `avro:"enabled"`
	Source     string            `avro:"source"`
	Type       string            `avro:"type"`
	Event      string            `avro:"event"`
	URL        string            `avro:"url"`
	Conditions []RuleCondition   `avro:"conditions"`
	Signal     string            `avro:"signal"`
	Map        map[string]string `avro:"map"`
	UpdatedAt  time.Time         `avro:"updated_at"`
}

// RuleCondition is one condition of a MappingRule: the value at Path compared by Op with Value (numbers as
// decimal text).
type RuleCondition struct {
	Path  string `avro:"path"`
	Op    string `avro:"op"`
	Value string `avro:"value"`
}

// MappingRules is the codec of MappingRule records.
var MappingRules = mustCodec[MappingRule]("mapping_rule")
