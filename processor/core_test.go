package processor

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// memState is a State in a map, for tests of the pure core.
type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, error) { return m[string(k)], nil }
func (m memState) Set(k, v []byte)              { m[string(k)] = v }
func (m memState) Delete(k []byte)              { delete(m, string(k)) }

// recorder is an Emitter that keeps everything.
type recorder struct {
	signals []schemas.Signal
	keys    []string
	links   []schemas.IdentityLink
}

func (r *recorder) Signal(key []byte, s *schemas.Signal, _ []byte) {
	r.signals = append(r.signals, *s)
	r.keys = append(r.keys, string(key))
}
func (r *recorder) Link(l *schemas.IdentityLink) { r.links = append(r.links, *l) }

type coreRig struct {
	t     *testing.T
	core  *Core
	st    memState
	em    *recorder
	now   time.Time
	off   int64
	extra func(*CoreConfig)
}

func newRig(t *testing.T, mod func(*CoreConfig)) *coreRig {
	r := &coreRig{t: t, st: memState{}, em: &recorder{}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := CoreConfig{Now: func() time.Time { return r.now }}
	if mod != nil {
		mod(&cfg)
	}
	r.core = NewCore(cfg)
	return r
}

// event processes payload for tenant at the next offset and returns the signals emitted by it.
func (r *coreRig) event(tenant, payload string) []schemas.Signal {
	r.t.Helper()
	r.off++
	return r.at(tenant, payload, r.off)
}

func (r *coreRig) at(tenant, payload string, offset int64) []schemas.Signal {
	r.t.Helper()
	n := len(r.em.signals)
	raw := &schemas.RawEvent{Tenant: tenant, Source: schemas.SourceSegment, ReceivedAt: r.now, Payload: []byte(payload)}
	if err := r.core.ProcessEvent(r.st, r.em, 0, offset, schemas.RoutingKey(tenant, routingID(payload)), raw); err != nil {
		r.t.Fatalf("processing %s: %v", payload, err)
	}
	return r.em.signals[n:]
}

func TestCanonicalHash(t *testing.T) {
	base := `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]},"sentAt":"1"}`
	for _, tc := range []struct {
		name    string
		payload string
		same    bool
	}{
		{"key order and whitespace", "{ \"properties\": {\"a\":[1,{\"x\":\"\\u00e9\",\"y\":2}], \"b\":1.50},\n \"anonymousId\":\"a\",\"event\":\"E\",\"type\":\"track\"}", true},
		{"other sentAt and receivedAt", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]},"sentAt":"2","receivedAt":"x"}`, true},
		{"number written differently", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.5,"a":[1,{"y":2,"x":"\u00e9"}]}}`, false},
		{"array order", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[{"y":2,"x":"\u00e9"},1]}}`, false},
		{"nested sentAt is content", `{"type":"track","event":"E","anonymousId":"a","properties":{"sentAt":1,"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e1, _, err := parseEvent(&schemas.RawEvent{Payload: []byte(base)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			e2, _, err := parseEvent(&schemas.RawEvent{Payload: []byte(tc.payload)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if (e1.SignalID == e2.SignalID) != tc.same {
				t.Errorf("same id = %v, want %v", e1.SignalID == e2.SignalID, tc.same)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	for _, p := range []string{``, `[]`, `"x"`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, `{"a":"\x01"}`, `{"a":[1 2]}`, `{"a":01x}`, strings.Repeat("[", 100)} {
		if _, _, err := parseEvent(&schemas.RawEvent{Payload: []byte(p)}, nil); err == nil {
			t.Errorf("parsed %q", p)
		}
	}
}

func TestDerivedFields(t *testing.T) {
	for _, tc := range []struct {
		payload, typ, name, email, url, page string
	}{
		{`{"type":"track","event":"Demo","anonymousId":"a","properties":{"email":" Bob@X.io "}}`, "track", "Demo", "bob@x.io", "", ""},
		{`{"type":"page","anonymousId":"a","properties":{"name":"Pricing","url":"https://x/p"}}`, "page", "Pricing", "", "https://x/p", "Pricing"},
		{`{"type":"page","anonymousId":"a","name":"Home","properties":{}}`, "page", "Home", "", "", "Home"},
		{`{"type":"page","anonymousId":"a","context":{"page":{"url":"https://x/docs/a?b"}}}`, "page", "/docs/a", "", "https://x/docs/a?b", ""},
		{`{"type":"identify","userId":"u","context":{"traits":{"email":"C@x.io"}}}`, "identify", "identify", "c@x.io", "", ""},
		{`{"type":"identify","userId":"u","traits":{"email":"not-an-email"}}`, "identify", "identify", "", "", ""},
	} {
		e, _, err := parseEvent(&schemas.RawEvent{Source: schemas.SourceSegment, Payload: []byte(tc.payload)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != tc.typ || e.Name != tc.name || e.Email != tc.email || e.URL != tc.url || e.PageName != tc.page {
			t.Errorf("%s: got type %q name %q email %q url %q page %q", tc.payload, e.Type, e.Name, e.Email, e.URL, e.PageName)
		}
	}
	e, _, _ := parseEvent(&schemas.RawEvent{Payload: []byte(`{"properties":{"form":{"name":"x"}},"n":1}`)}, nil)
	if v, ok := e.Field("properties.form.name"); !ok || v != "x" {
		t.Errorf("Field = %q %v", v, ok)
	}
	if _, ok := e.Field("properties.nope"); ok {
		t.Error("Field found a missing path")
	}
}

func TestDedupAndReplay(t *testing.T) {
	r := newRig(t, nil)
	ev := func(sentAt string) string {
		return fmt.Sprintf(`{"type":"track","event":"E","anonymousId":"a","messageId":"m","sentAt":%q}`, sentAt)
	}
	first := r.event("t", ev("1"))
	if len(first) != 1 || first[0].Version != 1 {
		t.Fatalf("first delivery: %+v", first)
	}
	off := r.off
	for i := range 4 {
		if got := r.event("t", ev(fmt.Sprint(i+2))); len(got) != 0 {
			t.Fatalf("retry %d emitted %+v", i, got)
		}
	}
	if r.core.Stats.Duplicates != 4 {
		t.Errorf("duplicates = %d", r.core.Stats.Duplicates)
	}
	// A replay reads the first offset again: emitted again, one version up, same id.
	again := r.at("t", ev("1"), off)
	if len(again) != 1 || again[0].SignalID != first[0].SignalID || again[0].Version != 2 {
		t.Fatalf("replay: %+v", again)
	}
	// Another tenant with the same payload is another signal.
	if got := r.event("t2", ev("1")); len(got) != 1 {
		t.Fatalf("other tenant: %+v", got)
	}
	// After the window the entry expires (sweep) and the same content is new again.
	r.now = r.now.Add(DefaultDedupWindow + time.Minute)
	sweepAll(t, r)
	if r.core.Stats.DedupExpired != 2 {
		t.Errorf("dedup expired = %d, want 2", r.core.Stats.DedupExpired)
	}
	if got := r.event("t", ev("9")); len(got) != 1 || got[0].Version != 1 {
		t.Fatalf("after window: %+v", got)
	}
}

func sweepAll(t *testing.T, r *coreRig) {
	t.Helper()
	keys := make([]string, 0, len(r.st))
	for k := range r.st {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v, ok := r.st[k]; ok {
			if err := r.core.Expire(r.st, []byte(k), v, r.now); err != nil {
				t.Fatal(err)
			}
		}
	}
}
