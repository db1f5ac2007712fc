package rules

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// Suggestion is a rule draft made from a sample payload, and the dot paths the sample has.
type Suggestion struct {
	Rule Rule `json:"rule"`
	// Paths are the scalar leaves of the sample, sorted, with their sample values (cut to 80 characters), to
	// copy into conditions or map targets.
	Paths []PathSample `json:"paths"`
}

// PathSample is one dot path of a sample payload and its value there as text.
type PathSample struct {
	Path  string `json:"path"`
	Value string `json:"value"`
}

// Keys under which a signal queue row carries its sample payload (as an object or as JSON text).
var sampleKeys = []string{"sample_payload", "payload", "sample"}

// Suggest drafts a rule from a sample: a Segment or webhook event JSON, or a row of the signal queue query
// (sink/queries/signal_queue.sql as JSON: source, type, event and the sample under sample_payload, payload or
// sample, as an object or JSON text; the row's source, type and event win over the payload's). tenant fills the
// draft's tenant when the sample does not carry one.
//
// The draft matches the sample's source, type and event name (a page call matches its URL path instead), has an
// eq condition for each short categorical text property (properties.form_name: demo, but not ids, emails,
// URLs or long text), maps email from traits.email, properties.email or context.traits.email, and name,
// company and title from traits, context.traits or properties when the sample has them.
func Suggest(sample []byte, tenant string) (*Suggestion, error) {
	var row map[string]any
	dec := json.NewDecoder(bytes.NewReader(sample))
	dec.UseNumber()
	if err := dec.Decode(&row); err != nil {
		return nil, fmt.Errorf("sample is not a JSON object: %w", err)
	}
	ev, isRow := row, false
	for _, k := range sampleKeys {
		if p := asObject(row[k]); p != nil {
			ev, isRow = p, true
			break
		}
	}
	str := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }

	if tenant == "" && isRow {
		tenant = str(row, "tenant")
	}
	source := ""
	if isRow {
		source = str(row, "source")
	}
	if source == "" {
		source = "webhook"
		if ev["type"] != nil && ev["messageId"] != nil && (ev["anonymousId"] != nil || ev["userId"] != nil) {
			source = "segment"
		}
	}
	typ := "webhook"
	if source == "segment" {
		typ = str(ev, "type")
	}
	if isRow && str(row, "type") != "" {
		typ = str(row, "type")
	}
	name, url := eventName(ev, typ)
	if isRow {
		// The queue grouped the signals by this name: the rule must match it as the processor derives it.
		name = firstNonEmpty(str(row, "event"), str(row, "event_name"), name)
	}

	r := Rule{Tenant: tenant, Priority: 10, Enabled: true, Map: map[string]string{},
		Match: Match{Source: source, Type: typ}}
	if typ == "page" && url != "" {
		r.Match.URL = url
		r.ID, r.Name, r.Signal = slug("page"+url), "Page "+url, "Viewed "+url
	} else {
		r.Match.Event = name
		r.ID, r.Name, r.Signal = slug(name), name, name
	}
	if r.ID == "" {
		r.ID = "rule"
	}
	var paths []PathSample
	leaves(ev, "", func(p string, v any) {
		s, _ := Text(v)
		if len(s) > 80 {
			s = s[:80]
		}
		paths = append(paths, PathSample{Path: p, Value: s})
	})
	sort.Slice(paths, func(i, j int) bool { return paths[i].Path < paths[j].Path })
	present := map[string]string{}
	for _, p := range paths {
		present[p.Path] = p.Value
	}
	// properties.name and properties.title name pages and products, not people: only email and company are
	// taken from properties.
	sources := map[string][]string{
		TargetEmail: {"traits.", "properties.", "context.traits."}, TargetCompany: {"traits.", "context.traits.", "properties."},
		TargetName: {"traits.", "context.traits."}, TargetTitle: {"traits.", "context.traits."},
	}
	for _, target := range []string{TargetEmail, TargetName, TargetCompany, TargetTitle} {
		for _, prefix := range sources[target] {
			if v, ok := present[prefix+target]; ok && v != "" {
				r.Map[target] = prefix + target
				break
			}
		}
	}
	if _, ok := r.Map[TargetEmail]; !ok {
		// Webhooks put the email anywhere (user.email, data.customer_email): take the first path named like one
		// that holds one.
		for _, p := range paths {
			last := strings.ToLower(p.Path[strings.LastIndexByte(p.Path, '.')+1:])
			if strings.HasSuffix(last, "email") && NormalizeEmail(p.Value) != "" {
				r.Map[TargetEmail] = p.Path
				break
			}
		}
	}
	if typ != "page" {
		for _, p := range paths {
			if categorical(p) && !mapped(r.Map, p.Path) && len(r.Match.Conditions) < 5 {
				r.Match.Conditions = append(r.Match.Conditions, Condition{Path: p.Path, Op: OpEq, Value: Value(p.Value)})
			}
		}
	}
	if len(r.Map) == 0 {
		r.Map = nil
	}
	if err := Validate(&r); err != nil {
		return nil, fmt.Errorf("sample gives no valid draft: %w", err)
	}
	return &Suggestion{Rule: r, Paths: paths}, nil
}

// eventName names the event as the signal queue does: track event, page name or URL path, identify.
func eventName(ev map[string]any, typ string) (name, urlPathOf string) {
	props, _ := ev["properties"].(map[string]any)
	s := func(m map[string]any, k string) string { v, _ := m[k].(string); return v }
	u := firstNonEmpty(s(props, "url"), s(props, "path"))
	if ctx, ok := ev["context"].(map[string]any); ok && u == "" {
		page, _ := ctx["page"].(map[string]any)
		u = firstNonEmpty(s(page, "url"), s(page, "path"))
	}
	if u != "" {
		urlPathOf = URLPath(u)
	}
	switch typ {
	case "identify":
		return "identify", urlPathOf
	case "page", "screen":
		return firstNonEmpty(s(props, "name"), s(ev, "name"), urlPathOf), urlPathOf
	}
	return firstNonEmpty(s(ev, "event"), s(ev, "event_name"), s(ev, "type")), urlPathOf
}

// categorical reports whether a sample leaf is worth a pre-filled eq condition: short text under properties
// that is not an id, an email, a URL or a mapped field. Everything else stays in Paths for the user to pick.
func categorical(p PathSample) bool {
	if !strings.HasPrefix(p.Path, "properties.") || strings.Count(p.Path, ".") != 1 {
		return false
	}
	key := strings.TrimPrefix(p.Path, "properties.")
	if key == "id" || strings.HasSuffix(key, "_id") || strings.HasSuffix(key, "Id") || key == "name" || key == "title" {
		return false
	}
	lower := strings.ToLower(key)
	for _, skip := range []string{"email", "url", "path", "referrer", "search", "time", "date", "revenue", "price", "total", "value", "token"} {
		if strings.Contains(lower, skip) {
			return false
		}
	}
	v := p.Value
	if v == "" || len(v) > 64 || strings.ContainsAny(v, "@/") || strings.Contains(v, "://") {
		return false
	}
	if _, err := strconv.ParseFloat(v, 64); err == nil || v == "true" || v == "false" {
		return false
	}
	return true
}

func mapped(m map[string]string, path string) bool {
	for _, p := range m {
		if p == path {
			return true
		}
	}
	return false
}

// leaves calls fn for every scalar (non-null) leaf of v with its dot path; array elements by index, the first 5.
func leaves(v any, prefix string, fn func(string, any)) {
	join := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if k == "" || strings.ContainsAny(k, ".*[]") || strings.TrimSpace(k) != k {
				continue // not addressable with a dot path
			}
			leaves(c, join(k), fn)
		}
	case []any:
		for i, c := range x {
			if i == 5 {
				break
			}
			leaves(c, join(strconv.Itoa(i)), fn)
		}
	case nil:
	default:
		if _, err := ParsePath(prefix); err == nil {
			fn(prefix, v)
		}
	}
}

// slug turns an event name into a rule id: "Form Submitted" → form-submitted.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
		if b.Len() >= 64 {
			break
		}
	}
	return b.String()
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// asObject returns v as a JSON object: v itself, or v decoded when it is JSON text (ClickHouse rows carry the
// payload as a string).
func asObject(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		return x
	case string:
		var m map[string]any
		d := json.NewDecoder(strings.NewReader(x))
		d.UseNumber()
		if d.Decode(&m) == nil {
			return m
		}
	}
	return nil
}

// YAML renders the draft as a rules file, with the sample's dot paths as comments to copy from.
func (s *Suggestion) YAML() ([]byte, error) {
	y, err := EncodeYAML([]Rule{s.Rule})
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString("# Rule draft from a sample payload: review the conditions and map, then `apply` it.\n")
	b.Write(y)
	if len(s.Paths) > 0 {
		b.WriteString("# Dot paths in the sample (copy into match.conditions or map):\n")
		for _, p := range s.Paths {
			v, _ := json.Marshal(p.Value)
			fmt.Fprintf(&b, "#   - {path: %s, op: eq, value: %s}\n", p.Path, v)
		}
	}
	return b.Bytes(), nil
}
