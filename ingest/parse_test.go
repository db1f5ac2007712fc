package ingest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/schemas"
)

func TestParseBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		body   string
		events []string // raw spans
		multi  bool
		ctx    string
		err    string
	}{
		{name: "object", body: ` {"a":1} `, events: []string{`{"a":1}`}},
		{name: "array", body: `[{"a":1}, 2 ,"x"]`, events: []string{`{"a":1}`, `2`, `"x"`}, multi: true},
		{name: "batch", body: `{"context":{"c":1},"batch":[{"a":1},{"b":[2]}],"sentAt":"x"}`,
			events: []string{`{"a":1}`, `{"b":[2]}`}, multi: true, ctx: `{"c":1}`},
		{name: "batch with null context", body: `{"batch":[{}],"context":null}`, events: []string{`{}`}, multi: true},
		{name: "batch not an array is an event", body: `{"batch":"x"}`, events: []string{`{"batch":"x"}`}},
		{name: "escapes and unicode", body: `{"k\u0041":"\"é\\\n","n":-1.5e+3,"t":true,"f":false,"z":null}`,
			events: []string{`{"k\u0041":"\"é\\\n","n":-1.5e+3,"t":true,"f":false,"z":null}`}},
		{name: "empty", body: " ", err: "empty body"},
		{name: "scalar", body: `"x"`, err: "expected a JSON object"},
		{name: "bad literal", body: `{"a":tru}`, err: "invalid literal"},
		{name: "bad number", body: `[01]`, err: "expected ',' or ']'"},
		{name: "leading dot", body: `[.5]`, err: "unexpected character"},
		{name: "control char", body: "{\"a\":\"\x01\"}", err: "control character"},
		{name: "bad escape", body: `{"a":"\x"}`, err: "invalid escape"},
		{name: "missing colon", body: `{"a" 1}`, err: "expected ':'"},
		{name: "trailing comma", body: `[1,]`, err: "unexpected character"},
		{name: "unterminated", body: `[{"a":"b`, err: "unterminated string"},
		{name: "too deep", body: strings.Repeat("[", 200) + strings.Repeat("]", 200), err: "nesting too deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p parsed
			err := parseBody([]byte(tc.body), &p)
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
			for _, e := range p.events {
				got = append(got, string(e.raw))
			}
			if strings.Join(got, "\x00") != strings.Join(tc.events, "\x00") || p.multi != tc.multi || string(p.batchCtx) != tc.ctx {
				t.Errorf("got %q multi=%v ctx=%q, want %q multi=%v ctx=%q", got, p.multi, p.batchCtx, tc.events, tc.multi, tc.ctx)
			}
		})
	}
}

func TestCheckEvent(t *testing.T) {
	webhook := &route{name: "webhook"}
	v1track := &route{name: "v1_track", impliedType: "track", segmentOnly: true}
	for _, tc := range []struct {
		name    string
		ev      string
		rt      *route
		ctx     string
		id      string
		segment bool
		payload string // when rewritten
		reason  string
	}{
		{name: "anonymous first", ev: `{"type":"track","anonymousId":"a","userId":"u","messageId":"m"}`, rt: webhook, id: "a", segment: true},
		{name: "user next", ev: `{"type":"identify","anonymousId":"","userId":"u","messageId":"m"}`, rt: webhook, id: "u", segment: true},
		{name: "numeric user", ev: `{"type":"identify","userId":42}`, rt: webhook, id: "42", segment: true},
		{name: "escaped id", ev: `{"type":"page","anonymousId":"a\u00e9"}`, rt: webhook, id: "aé", segment: true},
		{name: "message id makes it segment", ev: `{"messageId":"m","x":1}`, rt: webhook, reason: "type must be one of"},
		{name: "null type", ev: `{"type":null,"anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "generic webhook by content", ev: `{"form":"x"}`, rt: webhook, id: string(contentHash([]byte(`{"form":"x"}`)))},
		{name: "bad type", ev: `{"type":"launch","anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "non-string type", ev: `{"type":1,"anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "object id", ev: `{"type":"track","anonymousId":{}}`, rt: webhook, reason: "anonymousId must be a string"},
		{name: "implied type", ev: `{"anonymousId":"a"}`, rt: v1track, id: "a", segment: true, payload: `{"type":"track","anonymousId":"a"}`},
		{name: "implied type empty object", ev: `{}`, rt: v1track, reason: "userId or anonymousId"},
		{name: "context inserted", ev: `{"type":"track","userId":"u"}`, rt: webhook, ctx: `{"a":1}`, id: "u", segment: true,
			payload: `{"context":{"a":1},"type":"track","userId":"u"}`},
		{name: "context merged", ev: `{"type":"track","userId":"u","context":{"a":2,"b":3}}`, rt: webhook, ctx: `{"a":1,"c":{"d":4}}`,
			id: "u", segment: true, payload: `{"type":"track","userId":"u","context":{"a":2,"b":3,"c":{"d":4}}}`},
		{name: "empty context merged", ev: `{"type":"track","userId":"u","context":{ }}`, rt: webhook, ctx: `{"a":1}`,
			id: "u", segment: true, payload: `{"type":"track","userId":"u","context":{ "a":1}}`},
		{name: "null context replaced", ev: `{"type":"track","userId":"u","context":null}`, rt: webhook, ctx: `{"a":1}`,
			id: "u", segment: true, payload: `{"type":"track","userId":"u","context":{"a":1}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := inspect([]byte(tc.ev))
			var scratch []byte
			var ctx []byte
			if tc.ctx != "" {
				ctx = []byte(tc.ctx)
			}
			p, reason, _ := check(&e, tc.rt, ctx, 1000, &scratch)
			if tc.reason != "" {
				if !strings.Contains(reason, tc.reason) || p.kind != kindInvalid {
					t.Fatalf("reason %q kind %d, want %q", reason, p.kind, tc.reason)
				}
				return
			}
			if reason != "" {
				t.Fatalf("rejected: %s", reason)
			}
			if string(p.id) != tc.id || p.segment != tc.segment {
				t.Errorf("id %q segment %v, want %q %v", p.id, p.segment, tc.id, tc.segment)
			}
			payload := p.payload
			if p.off >= 0 {
				payload = scratch[p.off:p.end]
			}
			want := tc.payload
			if want == "" {
				want = tc.ev
			}
			if string(payload) != want {
				t.Errorf("payload %s, want %s", payload, want)
			}
		})
	}
}

// TestAppendRawEventMatchesCodec holds the hand-written encoder to the schema's codec, byte for byte.
func TestRoutingKeyMatchesSchemas(t *testing.T) {
	if got, want := routingKey(nil, "t", []byte("id")), schemas.RoutingKey("t", "id"); !bytes.Equal(got, want) {
		t.Fatalf("%q != %q", got, want)
	}
}

// FuzzParseBody checks the scanner against encoding/json and that every accepted event survives check and the
// rewrite as valid JSON. Run: go test ./ingest -run '^$' -fuzz '^FuzzParseBody$' -fuzztime 30s
func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"type":"track","anonymousId":"a","context":{"x":1}}`), []byte(`{"x":2,"y":3}`))
	f.Fuzz(func(t *testing.T, body, ctx []byte) {
		var p parsed
		err := parseBody(body, &p)
		valid := json.Valid(body)
		if err == nil && !valid {
			t.Fatalf("accepted invalid JSON %q", body)
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
		var scratch []byte
		for i := range p.events {
			e := &p.events[i]
			if !json.Valid(e.raw) {
				t.Fatalf("event %q is not valid JSON", e.raw)
			}
			for _, rt := range []*route{{name: "webhook"}, {name: "v1", impliedType: "page", segmentOnly: true}} {
				pr, reason, _ := check(e, rt, ctx, 1<<20, &scratch)
				if reason != "" {
					continue
				}
				payload := pr.payload
				if pr.off >= 0 {
					payload = scratch[pr.off:pr.end]
				}
				var m map[string]json.RawMessage
				if err := json.Unmarshal(payload, &m); err != nil {
					t.Fatalf("payload %q of event %q (ctx %q): %v", payload, e.raw, ctx, err)
				}
			}
		}
	})
}
