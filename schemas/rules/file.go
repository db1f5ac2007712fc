package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
)

// MaxFileSize bounds a rules file or HTTP body.
const MaxFileSize = 4 << 20

// Parse reads rules from a JSON or YAML document: one rule object, a list of rules, or {"rules": [...]}.
// Enabled defaults to true. Unknown fields are refused so that a typo does not silently drop a condition. Parse
// only decodes; call ValidateAll on the result.
func Parse(data []byte) ([]Rule, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("rules document larger than %d bytes", MaxFileSize)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("empty rules document")
	}
	if data[0] != '{' && data[0] != '[' {
		// YAML is turned into JSON so that both formats go through one strict decoder with one set of tags.
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, fmt.Errorf("parsing yaml: %w", err)
		}
		data = bytes.TrimSpace(j)
	}
	var items []json.RawMessage
	switch data[0] {
	case '[':
		if err := json.Unmarshal(data, &items); err != nil {
			return nil, fmt.Errorf("parsing rules list: %w", err)
		}
	case '{':
		var wrapper struct {
			Rules []json.RawMessage `json:"rules"`
		}
		if json.Unmarshal(data, &wrapper) == nil && wrapper.Rules != nil {
			items = wrapper.Rules
		} else {
			items = []json.RawMessage{data}
		}
	default:
		return nil, errors.New("rules document is neither an object nor a list")
	}
	out := make([]Rule, len(items))
	for i, raw := range items {
		out[i] = Rule{Enabled: true}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out[i]); err != nil {
			return nil, fmt.Errorf("rule #%d: %w", i+1, err)
		}
	}
	return out, nil
}

// EncodeYAML writes rules as a YAML document (a single rule as an object, several as a list).
func EncodeYAML(rs []Rule) ([]byte, error) {
	var v any = rs
	if len(rs) == 1 {
		v = rs[0]
	}
	return EncodeYAMLValue(v)
}

// EncodeYAMLValue is EncodeYAML for any JSON-encodable value (a rule list with extra fields).
func EncodeYAMLValue(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding rules: %w", err)
	}
	// Through JSON, so YAML keys, omitted fields and value forms are exactly the JSON ones.
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encoding rules as yaml: %w", err)
	}
	return y, nil
}
