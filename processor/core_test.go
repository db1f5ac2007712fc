package processor

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
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

// at processes payload for tenant at offset, as the edge writes it (raw_event.v2), and returns the signals emitted.
func (r *coreRig) at(tenant, payload string, offset int64) []schemas.Signal {
	r.t.Helper()
	return r.record(edgeRaw(r.t, tenant, payload, r.now), offset)
}

// record processes raw at offset and returns the signals emitted.
func (r *coreRig) record(raw *schemas.RawEvent, offset int64) []schemas.Signal {
	r.t.Helper()
	n := len(r.em.signals)
	key := schemas.RoutingKey(raw.Tenant, contract.RoutingID(&edgeRaw(r.t, raw.Tenant, string(raw.Payload), raw.ReceivedAt).EventFields))
	if err := r.core.ProcessEvent(r.st, r.em, 0, offset, key, raw); err != nil {
		r.t.Fatalf("processing %s: %v", raw.Payload, err)
	}
	return r.em.signals[n:]
}

// A retry re-serialized by another library (key order, whitespace, escapes, number forms, transport members) is a
// duplicate of the first delivery; a change of content is a new signal. (Before the event contract, "1.5" and
// "1.50" were two signals: the issue changed that expectation.)
func TestRetriesAreDuplicates(t *testing.T) {
	base := `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]},"sentAt":"1"}`
	for _, tc := range []struct {
		name    string
		payload string
		same    bool
	}{
		{"key order and whitespace", "{ \"properties\": {\"a\":[1,{\"x\":\"\\u00e9\",\"y\":2}], \"b\":1.50},\n \"anonymousId\":\"a\",\"event\":\"E\",\"type\":\"track\"}", true},
		{"other sentAt and receivedAt", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]},"sentAt":"2","receivedAt":"x"}`, true},
		{"number written differently", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.5,"a":[1,{"y":2.0,"x":"é"}]}}`, true},
		{"array order", `{"type":"track","event":"E","anonymousId":"a","properties":{"b":1.50,"a":[{"y":2,"x":"\u00e9"},1]}}`, false},
		{"nested sentAt is content", `{"type":"track","event":"E","anonymousId":"a","properties":{"sentAt":1,"b":1.50,"a":[1,{"y":2,"x":"\u00e9"}]}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			first := r.event("t", base)
			again := r.event("t", tc.payload)
			if len(first) != 1 || (len(again) == 0) != tc.same {
				t.Fatalf("first %d signals, retry %d signals; want the retry to be a duplicate: %v", len(first), len(again), tc.same)
			}
		})
	}
}

// What the edge accepted before the contract is processed, never dead-lettered for its shape: objects nested
// deeper than the old processor's 64, duplicate names, invalid UTF-8, a lone surrogate (all read leniently). A
// record that is not a JSON object at all (another producer's) is poison.
func TestV1RecordsProcessLeniently(t *testing.T) {
	deep := `{"type":"track","anonymousId":"d","event":"Deep","properties":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat(`}`, 100) + `}`
	r := newRig(t, nil)
	for _, p := range []string{deep, `{"type":"track","anonymousId":"a","anonymousId":"b","event":"Dup"}`,
		"{\"type\":\"track\",\"anonymousId\":\"a\",\"event\":\"\xff\"}", `{"type":"track","anonymousId":"a","event":"\ud800"}`} {
		r.off++
		raw := &schemas.RawEvent{Tenant: "t", Source: schemas.SourceSegment, ReceivedAt: r.now, Payload: []byte(p)}
		if err := r.core.ProcessEvent(r.st, r.em, 0, r.off, nil, raw); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	if len(r.em.signals) != 4 {
		t.Fatalf("%d signals, want 4", len(r.em.signals))
	}
	for _, p := range []string{``, `[]`, `"x"`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, "{\"a\":\"\x01\"}", `{"a":[1 2]}`, `{"a":01x}`} {
		raw := &schemas.RawEvent{Tenant: "t", Source: schemas.SourceSegment, Payload: []byte(p)}
		if err := r.core.ProcessEvent(r.st, r.em, 0, 1, nil, raw); !errors.Is(err, ErrPoison) {
			t.Errorf("%q: %v, want ErrPoison", p, err)
		}
	}
}

// The signal's fields are the contract's: the same from the edge's record and from a v1 record of the same
// payload (the processor derives it with the same function).
func TestSignalFieldsAreTheContracts(t *testing.T) {
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
		edge, old := newRig(t, nil), newRig(t, nil)
		e := edge.event("t", tc.payload)
		o := old.record(v1Raw(edgeRaw(t, "t", tc.payload, old.now)), 1)
		if len(e) != 1 || len(o) != 1 {
			t.Fatalf("%s: %d and %d signals", tc.payload, len(e), len(o))
		}
		s := e[0]
		if s.Type != tc.typ || s.Event != tc.name || s.Email != tc.email || s.URL != tc.url || s.PageName != tc.page {
			t.Errorf("%s: got type %q name %q email %q url %q page %q", tc.payload, s.Type, s.Event, s.Email, s.URL, s.PageName)
		}
		o[0].SignalID = s.SignalID // a v1 record keeps its legacy id (TestUpgradeKeepsFirstIDs)
		if !reflect.DeepEqual(s, o[0]) {
			t.Errorf("%s: from the edge's record\n %+v\nfrom a v1 record\n %+v", tc.payload, s, o[0])
		}
	}
}

func TestDedupAndReplay(t *testing.T) {
	r := newRig(t, nil)
	ev := func(sentAt string) string {
		return fmt.Sprintf(`{"type":"track","event":"E","anonymousId":"a","messageId":"m","sentAt":%q}`, sentAt)
	}
	first := r.event("t", ev("1"))
	if len(first) != 1 || versionCount(first[0].Version) != 1 {
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
	if len(again) != 1 || again[0].SignalID != first[0].SignalID || versionCount(again[0].Version) != 2 {
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
	if got := r.event("t", ev("9")); len(got) != 1 || versionCount(got[0].Version) != 1 {
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
