package contract

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSplitBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		events []string // raw spans
		multi  bool
		ctx    string
		sentAt string
		err    string
	}{
		{name: "object", body: ` {"a":1} `, events: []string{`{"a":1}`}},
		{name: "array", body: `[{"a":1}, 2 ,"x"]`, events: []string{`{"a":1}`, `2`, `"x"`}, multi: true},
		{name: "batch", body: `{"context":{"c":1},"batch":[{"a":1},{"b":[2]}],"sentAt":"x"}`,
			events: []string{`{"a":1}`, `{"b":[2]}`}, multi: true, ctx: `{"c":1}`, sentAt: `"x"`},
		{name: "batch with null context and numeric sentAt", body: `{"batch":[{}],"context":null,"sentAt":1}`, events: []string{`{}`}, multi: true},
		{name: "batch not an array is an event", body: `{"batch":"x"}`, events: []string{`{"batch":"x"}`}},
		{name: "escapes and unicode", body: `{"k\u0041":"\"é\\\n","n":-1.5e+3,"t":true,"f":false,"z":null}`,
			events: []string{`{"k\u0041":"\"é\\\n","n":-1.5e+3,"t":true,"f":false,"z":null}`}},
		{name: "empty", body: " ", err: "empty body"},
		{name: "scalar", body: `"x"`, err: "expected a JSON object"},
		{name: "bad literal", body: `{"a":tru}`, err: "invalid literal"},
		{name: "leading zero", body: `{"a":007}`, err: "expected ',' or '}'"},
		{name: "bad number", body: `[01]`, err: "expected ',' or ']'"},
		{name: "leading dot", body: `[.5]`, err: "unexpected character"},
		{name: "NaN", body: `{"a":NaN}`, err: "unexpected character"},
		{name: "control char", body: "{\"a\":\"\x01\"}", err: "control character"},
		{name: "bad escape", body: `{"a":"\x"}`, err: "invalid escape"},
		{name: "short unicode escape", body: `{"a":"\u12"}`, err: "invalid \\u escape"},
		{name: "missing colon", body: `{"a" 1}`, err: "expected ':'"},
		{name: "trailing comma", body: `[1,]`, err: "unexpected character"},
		{name: "unterminated", body: `[{"a":"b`, err: "unterminated string"},
		{name: "too deep", body: strings.Repeat("[", 200) + strings.Repeat("]", 200), err: "nesting too deep"},
		{name: "128 deep is the limit", body: `{"a":` + strings.Repeat("[", 127) + strings.Repeat("]", 127) + `}`,
			events: []string{`{"a":` + strings.Repeat("[", 127) + strings.Repeat("]", 127) + `}`}},
		{name: "129 deep", body: `{"a":` + strings.Repeat("[", 128) + strings.Repeat("]", 128) + `}`, err: "nesting too deep"},
		{name: "129 deep in an array", body: `[` + strings.Repeat("[", 128) + strings.Repeat("]", 128) + `]`, err: "nesting too deep"},
		{name: "mismatched brackets in an array", body: `[{"a":[1}]`, err: "mismatched bracket"},
		{name: "unterminated event in an array", body: `[{"a":"x}`, err: "unterminated string"},
		// The inside of an array's events is the canonicalizer's to validate (one pass): split, refused by Scan.
		{name: "invalid event in an array", body: `[{"a":{"b":tru}},{"b":1}]`, events: []string{`{"a":{"b":tru}}`, `{"b":1}`}, multi: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Body
			err := SplitBody([]byte(tc.body), &b)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to say %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range b.Events {
				got = append(got, string(e.Raw))
			}
			if strings.Join(got, "\x00") != strings.Join(tc.events, "\x00") || b.Multi != tc.multi ||
				string(b.Envelope.Context) != tc.ctx || string(b.Envelope.SentAt) != tc.sentAt {
				t.Errorf("got %q multi=%v ctx=%q sentAt=%q, want %q multi=%v ctx=%q sentAt=%q", got, b.Multi,
					b.Envelope.Context, b.Envelope.SentAt, tc.events, tc.multi, tc.ctx, tc.sentAt)
			}
		})
	}
}

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct {
		name, ev string
		rw       Rewrite
		want     string
	}{
		{"nothing to do", `{"type":"track","userId":"u"}`, Rewrite{}, `{"type":"track","userId":"u"}`},
		{"implied type", `{"anonymousId":"a"}`, Rewrite{Type: "track"}, `{"type":"track","anonymousId":"a"}`},
		{"implied type, empty object", `{}`, Rewrite{Type: "page"}, `{"type":"page"}`},
		{"own type kept", `{"type":"page","anonymousId":"a"}`, Rewrite{Type: "track"}, `{"type":"page","anonymousId":"a"}`},
		{"context inserted", `{"type":"track","userId":"u"}`, Rewrite{Context: []byte(`{"a":1}`)},
			`{"context":{"a":1},"type":"track","userId":"u"}`},
		{"context merged, the event wins", `{"type":"track","userId":"u","context":{"a":2,"b":3}}`,
			Rewrite{Context: []byte(`{"a":1,"c":{"d":4}}`)}, `{"type":"track","userId":"u","context":{"a":2,"b":3,"c":{"d":4}}}`},
		{"escaped names are the same name", `{"context":{"\u0061":2}}`, Rewrite{Context: []byte(`{"a":1,"b":2}`)},
			`{"context":{"\u0061":2,"b":2}}`},
		{"empty context merged", `{"type":"track","userId":"u","context":{ }}`, Rewrite{Context: []byte(`{"a":1}`)},
			`{"type":"track","userId":"u","context":{ "a":1}}`},
		{"null context replaced", `{"type":"track","userId":"u","context":null}`, Rewrite{Context: []byte(`{"a":1}`)},
			`{"type":"track","userId":"u","context":{"a":1}}`},
		{"batch sentAt added", `{"type":"track","userId":"u"}`, Rewrite{SentAt: []byte(`"2026-01-01T00:00:00Z"`)},
			`{"sentAt":"2026-01-01T00:00:00Z","type":"track","userId":"u"}`},
		{"own sentAt kept", `{"userId":"u","sentAt":"x"}`, Rewrite{SentAt: []byte(`"y"`)}, `{"userId":"u","sentAt":"x"}`},
		{"all three", `{}`, Rewrite{Type: "identify", SentAt: []byte(`"y"`), Context: []byte(`{"a":1}`)},
			`{"type":"identify","sentAt":"y","context":{"a":1}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := Inspect([]byte(tc.ev))
			got := string(AppendEvent(nil, &e, &tc.rw))
			if !tc.rw.Needed(&e) {
				got = tc.ev
			}
			if got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if n := tc.rw.RewrittenSize(&e); n < len(got) {
				t.Errorf("RewrittenSize %d < %d", n, len(got))
			}
		})
	}
}

// refusedArray reports whether an element skipped as an array is one the caller refuses anyway (every element
// that is not an object is refused).
func refusedArray(raw []byte) bool { return len(raw) > 0 && raw[0] == '[' }

// FuzzSplitBody holds the scanner to encoding/json (json.Valid) and checks that every event survives the
// rewrites as valid JSON. Run: go test ./schemas/contract -run '^$' -fuzz '^FuzzSplitBody$' -fuzztime 30s
func FuzzSplitBody(f *testing.F) {
	f.Add([]byte(`{"type":"track","anonymousId":"a","context":{"x":1}}`), []byte(`{"x":2,"y":3}`))
	f.Fuzz(func(t *testing.T, body, ctx []byte) {
		var b Body
		err := SplitBody(body, &b)
		valid := json.Valid(body)
		if err == nil && !valid {
			// Only the inside of an array's events may be invalid (Scan validates them): one must be refused.
			var d Deriver
			refused := false
			for i := range b.Events {
				if e := &b.Events[i]; e.IsObject {
					if _, err := d.Scan(e.Raw, true); err != nil {
						refused = true
					}
				} else if !json.Valid(e.Raw) && !refusedArray(e.Raw) {
					t.Fatalf("accepted the invalid element %q of %q", e.Raw, body)
				}
				if e := &b.Events[i]; !e.IsObject && len(e.Raw) > 0 && e.Raw[0] == '[' && !json.Valid(e.Raw) {
					refused = true
				}
			}
			if !refused {
				t.Fatalf("accepted invalid JSON %q, and Scan accepts every event of it", body)
			}
		}
		if err != nil {
			if valid && !strings.Contains(err.Error(), "nesting too deep") && !strings.Contains(err.Error(), "expected a JSON object") &&
				!strings.Contains(err.Error(), "empty body") {
				t.Fatalf("refused valid JSON %q: %v", body, err)
			}
			return
		}
		if !json.Valid(ctx) || len(ctx) == 0 || ctx[0] != '{' {
			ctx = nil
		}
		var d Deriver
		for i := range b.Events {
			e := &b.Events[i]
			if !e.IsObject {
				continue
			}
			sp, err := d.Scan(e.Raw, true)
			if err != nil {
				continue
			}
			if !json.Valid(e.Raw) {
				t.Fatalf("event %q is not valid JSON, Scan accepts it", e.Raw)
			}
			e = &sp
			for _, rw := range []Rewrite{{Context: ctx}, {Type: "page", Context: ctx, SentAt: []byte(`"s"`)}} {
				payload := AppendEvent(nil, e, &rw)
				var m map[string]json.RawMessage
				if err := json.Unmarshal(payload, &m); err != nil {
					t.Fatalf("payload %q of event %q (ctx %q): %v", payload, e.Raw, ctx, err)
				}
			}
		}
	})
}

// TestBatchIntegrationsMerged: a batch's integrations fill in the members an event's own lack (the event wins),
// as its context does, and a single event's writeKey is reported.
func TestBatchIntegrationsMerged(t *testing.T) {
	var b Body
	body := []byte(`{"batch":[{"type":"track","integrations":{"All":false},"context":{"ip":"1"},"anonymousId":"a"},` +
		`{"type":"track","anonymousId":"b"}],"integrations":{"All":true,"Mixpanel":false},"context":{"ip":"2","app":{}},` +
		`"writeKey":"wk"}`)
	if err := SplitBody(body, &b); err != nil {
		t.Fatal(err)
	}
	rw := Rewrite{Context: b.Envelope.Context, Integrations: b.Envelope.Integrations}
	want := []string{
		`{"type":"track","integrations":{"All":false,"Mixpanel":false},"context":{"ip":"1","app":{}},"anonymousId":"a"}`,
		`{"context":{"ip":"2","app":{}},"integrations":{"All":true,"Mixpanel":false},"type":"track","anonymousId":"b"}`,
	}
	for i, e := range b.Events {
		if got := string(AppendEvent(nil, &e, &rw)); got != want[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, got, want[i])
		}
		if n := rw.RewrittenSize(&e); n < len(want[i]) {
			t.Errorf("event %d: RewrittenSize %d under the merged size %d", i, n, len(want[i]))
		}
	}
	if err := SplitBody([]byte(`{"type":"page","writeKey":"wk_1","anonymousId":"a"}`), &b); err != nil {
		t.Fatal(err)
	}
	if string(b.Envelope.WriteKey) != `"wk_1"` {
		t.Errorf("single event writeKey %q", b.Envelope.WriteKey)
	}
}
