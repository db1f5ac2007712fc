package schemas

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// viewers decode a record of each topic (base name) into a JSON-ready value.
var viewers = map[string]func(*Registry, []byte) (any, error){
	TopicRaw:        viewOf(RawEvents),
	TopicResolved:   viewOf(Signals),
	TopicIdentities: viewOf(IdentityLinks),
	TopicDLQ:        viewOf(DeadLetters),
	TopicErasures:   viewOf(Erasures),
	TopicRules:      viewOf(MappingRules),
}

func viewOf[T any](c *Codec[T]) func(*Registry, []byte) (any, error) {
	return func(reg *Registry, b []byte) (any, error) {
		var v T
		if err := c.DecodeWith(reg, b, &v); err != nil {
			return nil, err
		}
		return View(v), nil
	}
}

// ViewTopics lists the topics (base names) ViewRecord decodes, sorted.
func ViewTopics() []string {
	names := make([]string, 0, len(viewers))
	for n := range viewers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrNoView is returned by ViewRecord for a topic whose records it cannot decode (the processor's internal
// topics, ingest.usage).
var ErrNoView = fmt.Errorf("no decoder for the topic")

// ViewRecord decodes value, a record of topic base (a name without the deployment prefix), whatever schema
// version wrote it, into a value encoding/json prints with the Avro field names. A nil value (a tombstone)
// views as nil.
func ViewRecord(base string, value []byte) (any, error) { return ViewRecordWith(nil, base, value) }

// ViewRecordWith is ViewRecord for a reader of the schema registry wire format too (reg may be nil).
func ViewRecordWith(reg *Registry, base string, value []byte) (any, error) {
	view, ok := viewers[base]
	if !ok {
		return nil, fmt.Errorf("%w %q (decodable: %s)", ErrNoView, base, strings.Join(ViewTopics(), ", "))
	}
	if value == nil {
		return nil, nil
	}
	return view(reg, value)
}

// View returns v as maps, slices and scalars keyed by the Avro field names (embedded structs flattened): times as
// RFC 3339 UTC (null when zero), bytes holding JSON (payloads) as that JSON, other bytes as text when UTF-8, else
// base64.
func View(v any) any { return view(reflect.ValueOf(v)) }

var timeType = reflect.TypeOf(time.Time{})

func view(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return view(v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			if t.IsZero() {
				return nil
			}
			return t.UTC().Format(time.RFC3339Nano)
		}
		m := map[string]any{}
		viewFields(v, m)
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := v.Bytes()
			switch {
			case json.Valid(b):
				return json.RawMessage(b)
			case utf8.Valid(b):
				return string(b)
			}
			return base64.StdEncoding.EncodeToString(b)
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = view(v.Index(i))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		it := v.MapRange()
		for it.Next() {
			m[fmt.Sprint(it.Key().Interface())] = view(it.Value())
		}
		return m
	}
	return v.Interface()
}

func viewFields(v reflect.Value, m map[string]any) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			viewFields(v.Field(i), m)
			continue
		}
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("avro"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = view(v.Field(i))
	}
}
