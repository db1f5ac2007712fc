package contract

import (
	"bytes"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

var received = time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)

func derive(t *testing.T, payload string) (schemas.EventFields, error) {
	t.Helper()
	var d Deriver
	var f schemas.EventFields
	err := d.Derive([]byte(payload), Input{Source: schemas.SourceSegment, ReceivedAt: received}, &f)
	return f, err
}

func mustDerive(t *testing.T, payload string) schemas.EventFields {
	t.Helper()
	f, err := derive(t, payload)
	if err != nil {
		t.Fatalf("%s: %v", payload, err)
	}
	return f
}

func TestDeriveFields(t *testing.T) {
	for _, tc := range []struct {
		name, payload string
		check         func(f schemas.EventFields) bool
	}{
		{"track name", `{"type":"track","event":"Demo","anonymousId":"a","properties":{"email":" Bob@X.io "}}`,
			func(f schemas.EventFields) bool {
				return f.Type == "track" && f.Event == "Demo" && f.Email == "bob@x.io"
			}},
		{"page name from properties", `{"type":"page","anonymousId":"a","properties":{"name":"Pricing","url":"https://x/p"}}`,
			func(f schemas.EventFields) bool {
				return f.Event == "Pricing" && f.PageName == "Pricing" && f.URL == "https://x/p"
			}},
		{"page name from name", `{"type":"page","anonymousId":"a","name":"Home","properties":{}}`,
			func(f schemas.EventFields) bool { return f.Event == "Home" && f.PageName == "Home" }},
		{"page name from the URL path", `{"type":"page","anonymousId":"a","context":{"page":{"url":"https://x/docs/a?b"}}}`,
			func(f schemas.EventFields) bool {
				return f.Event == "/docs/a" && f.URL == "https://x/docs/a?b" && f.PageName == ""
			}},
		{"page name from properties.path", `{"type":"screen","anonymousId":"a","properties":{"url":"https://x/a","path":"/b"}}`,
			func(f schemas.EventFields) bool { return f.Event == "/b" }},
		{"page name of a URL without path", `{"type":"page","anonymousId":"a","properties":{"url":"https://x.io"}}`,
			func(f schemas.EventFields) bool { return f.Event == "/" }},
		{"identify", `{"type":"identify","userId":"u","context":{"traits":{"email":"C@x.io"}}}`,
			func(f schemas.EventFields) bool {
				return f.Event == "identify" && f.Email == "c@x.io" && f.Traits == `{"email":"C@x.io"}` && f.VisitorKind == schemas.IDKindUser
			}},
		{"not an email", `{"type":"identify","userId":"u","traits":{"email":"not-an-email"}}`,
			func(f schemas.EventFields) bool { return f.Email == "" }},
		{"group names no lead", `{"type":"group","anonymousId":"a","groupId":"g1","traits":{"email":"billing@acme.io"},"context":{"traits":{"email":"p@acme.io","name":"P"}}}`,
			func(f schemas.EventFields) bool {
				return f.Email == "" && f.GroupID == "g1" && f.Event == "group" && f.Traits == `{"email":"billing@acme.io"}`
			}},
		{"group without traits takes none of the person's", `{"type":"group","anonymousId":"a","groupId":"g1","context":{"traits":{"name":"P"}}}`,
			func(f schemas.EventFields) bool { return f.Traits == "{}" }},
		{"context.groupId", `{"type":"track","anonymousId":"a","event":"E","context":{"groupId":"g2"}}`,
			func(f schemas.EventFields) bool { return f.GroupID == "g2" }},
		{"alias", `{"type":"alias","previousId":"old","userId":"new"}`,
			func(f schemas.EventFields) bool {
				return f.Event == "alias" && f.PreviousID == "old" && f.VisitorID == "new"
			}},
		{"guest routes by the userId", `{"type":"track","anonymousId":"guest","userId":"U","event":"X"}`,
			func(f schemas.EventFields) bool {
				return f.VisitorKind == schemas.IDKindUser && f.VisitorID == "U" && f.AnonymousID == "guest"
			}},
		{"placeholders name no visitor", `{"type":"track","anonymousId":" NULL ","userId":"00000000-0000-0000-0000-000000000000","event":"X","messageId":"m"}`,
			func(f schemas.EventFields) bool {
				return f.VisitorKind == "" && f.VisitorID == "" && RoutingID(&f) == "m"
			}},
		{"escaped slash (PHP)", `{"type":"identify","anonymousId":"a\/b","traits":{"email":"x\/y@z.io"}}`,
			func(f schemas.EventFields) bool {
				return f.AnonymousID == "a/b" && f.VisitorID == "a/b" && f.Email == "x/y@z.io"
			}},
		{"surrogate pair", `{"type":"track","anonymousId":"\ud83d\ude00","event":"\u00e9"}`,
			func(f schemas.EventFields) bool { return f.AnonymousID == "😀" && f.Event == "é" }},
		{"numeric ids", `{"type":"track","userId":42,"event":"E","messageId":7}`,
			func(f schemas.EventFields) bool { return f.UserID == "42" && f.MessageID == "7" }},
		{"webhook", `{"event":"form_submit","email":"Lead@Example.com"}`, nil},
		{"analyst context", `{"type":"track","anonymousId":"a","event":"E","context":{"campaign":{"name":"spring","source":"google","medium":"cpc","term":"crm","content":"ad1"},"page":{"referrer":"https://r","path":"/p","title":"T","search":"?q"},"userAgent":"UA","ip":"1.2.3.4","locale":"en-US","timezone":"Europe/Berlin","library":{"name":"analytics.js","version":"4.1"}}}`,
			func(f schemas.EventFields) bool {
				x := f.EventContext
				return x == schemas.EventContext{UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring", UTMTerm: "crm",
					UTMContent: "ad1", Referrer: "https://r", PagePath: "/p", PageTitle: "T", PageSearch: "?q", UserAgent: "UA",
					IP: "1.2.3.4", Locale: "en-US", Timezone: "Europe/Berlin", LibraryName: "analytics.js", LibraryVersion: "4.1"}
			}},
		{"a page call's properties come first", `{"type":"page","anonymousId":"a","properties":{"path":"/pp","referrer":"r1"},"context":{"page":{"path":"/cp","referrer":"r2","title":"T"}}}`,
			func(f schemas.EventFields) bool {
				return f.PagePath == "/pp" && f.Referrer == "r1" && f.PageTitle == "T"
			}},
		{"a track call's properties are not the page", `{"type":"track","anonymousId":"a","event":"E","properties":{"path":"/pp"},"context":{"page":{"path":"/cp"}}}`,
			func(f schemas.EventFields) bool { return f.PagePath == "/cp" }},
		{"properties canonical", `{"type":"track","anonymousId":"a","event":"E","properties":{ "b" : 1.50, "a" : "\u00e9" }}`,
			func(f schemas.EventFields) bool { return f.Properties == `{"a":"é","b":1.5}` }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.check == nil {
				var d Deriver
				var f schemas.EventFields
				if err := d.Derive([]byte(tc.payload), Input{Source: schemas.SourceWebhook, ReceivedAt: received}, &f); err != nil {
					t.Fatal(err)
				}
				if f.Type != "webhook" || f.Event != "form_submit" || f.Email != "lead@example.com" || f.VisitorID != "" {
					t.Fatalf("%+v", f)
				}
				return
			}
			f := mustDerive(t, tc.payload)
			if !tc.check(f) || f.Contract != Version || len(f.SignalID) != 64 {
				t.Fatalf("%+v", f)
			}
		})
	}
}

func TestDeriveRefuses(t *testing.T) {
	for _, tc := range []struct{ payload, reason string }{
		{`{"type":"launch","anonymousId":"a"}`, TypeReason},
		{`{"type":"Track","anonymousId":"a"}`, TypeReason},
		{`{"anonymousId":"a"}`, TypeReason},
		{`{"type":"track","event":"x"}`, "userId or anonymousId is required"},
		{`{"type":"track","userId":true}`, "userId must be a string"},
		{`{"type":"track","anonymousId":"a","a":1,"a":1}`, "duplicate member name"},
		{"{\"type\":\"track\",\"anonymousId\":\"\xe9\"}", "invalid UTF-8"},
		{`{"type":"track","anonymousId":"\udfff"}`, "lone UTF-16 surrogate"},
	} {
		_, err := derive(t, tc.payload)
		if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: %v, want ErrInvalidEvent: %s", tc.payload, err, tc.reason)
		}
	}
	for _, p := range []string{``, `[]`, `"x"`, `{"a":}`, `{"a":1,}`, `{"a":1} x`, "{\"a\":\"\x01\"}", `{"a":01}`} {
		if _, err := derive(t, p); !errors.Is(err, ErrNotObject) {
			t.Errorf("%q: %v, want ErrNotObject", p, err)
		}
	}
}

// A record the edge accepted before the contract may hold what the contract refuses; read leniently, it derives
// fields (repaired), so the processor never dead-letters what got a 200.
func TestDeriveLenient(t *testing.T) {
	for _, p := range []string{
		"{\"type\":\"track\",\"anonymousId\":\"a\",\"event\":\"\xff\"}",
		`{"type":"track","anonymousId":"a","event":"\ud800"}`,
		`{"type":"track","anonymousId":"a","anonymousId":"b"}`,
		`{"type":"track","anonymousId":"a","properties":{"n":1e400}}`,
	} {
		var d Deriver
		var f schemas.EventFields
		if err := d.Derive([]byte(p), Input{Source: schemas.SourceSegment, ReceivedAt: received, Lenient: true}, &f); err != nil {
			t.Errorf("%q leniently: %v", p, err)
		}
		if f.SignalID == "" || f.Type != "track" {
			t.Errorf("%q leniently: %+v", p, f)
		}
	}
	var d Deriver
	var f schemas.EventFields
	_ = d.Derive([]byte(`{"type":"track","anonymousId":"a","anonymousId":"b"}`), Input{Source: schemas.SourceSegment, Lenient: true}, &f)
	if f.AnonymousID != "b" {
		t.Errorf("duplicate name read leniently: %q, want the last one", f.AnonymousID)
	}
}

// An event re-sent by another library, re-serialized (escapes, key order, number forms, whitespace, transport
// members), is one signal; any change of content is another.
func TestRetriesAreOneSignal(t *testing.T) {
	base := mustDerive(t, `{"type":"track","event":"Café","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"é/"}],"n":100},"sentAt":"2026-11-30T04:00:00Z"}`)
	for _, tc := range []struct {
		name, payload string
		same          bool
	}{
		{"escapes, key order and whitespace", "{ \"properties\": {\"n\":1e2,\"a\":[1,{\"x\":\"\\u00e9\\/\",\"y\":2.0}], \"b\":1.5},\n \"anonymousId\":\"a\",\"event\":\"Caf\\u00e9\",\"type\":\"track\"}", true},
		{"other transport members", `{"type":"track","event":"Café","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"é/"}],"n":100},"sentAt":"x","receivedAt":"y","writeKey":"k"}`, true},
		{"a number changed", `{"type":"track","event":"Café","anonymousId":"a","properties":{"b":1.51,"a":[1,{"y":2,"x":"é/"}],"n":100}}`, false},
		{"array order", `{"type":"track","event":"Café","anonymousId":"a","properties":{"b":1.50,"a":[{"y":2,"x":"é/"},1],"n":100}}`, false},
		{"a nested sentAt is content", `{"type":"track","event":"Café","anonymousId":"a","properties":{"sentAt":1,"b":1.50,"a":[1,{"y":2,"x":"é/"}],"n":100}}`, false},
		{"an integer beyond 2^53", `{"type":"track","event":"Café","anonymousId":"a","properties":{"b":1.50,"a":[1,{"y":2,"x":"é/"}],"n":9007199254740993}}`, false},
	} {
		f := mustDerive(t, tc.payload)
		if (f.SignalID == base.SignalID) != tc.same {
			t.Errorf("%s: same id = %v, want %v", tc.name, f.SignalID == base.SignalID, tc.same)
		}
	}
	a := mustDerive(t, `{"type":"track","event":"E","anonymousId":"a","properties":{"order":9007199254740993}}`)
	b := mustDerive(t, `{"type":"track","event":"E","anonymousId":"a","properties":{"order":9007199254740992}}`)
	if a.SignalID == b.SignalID {
		t.Fatal("two orders differing beyond 2^53 have one signal id")
	}
}

func TestPlaceholders(t *testing.T) {
	for _, id := range []string{"", " ", "null", "NULL", " Undefined ", "0", "00", "-1", "-", "anonymous", "Guest",
		"none", "None", "nil", "(null)", "<null>", "unknown", "N/A", "na", "[object Object]", "true", "FALSE", "NaN",
		"00000000-0000-0000-0000-000000000000", "{}"} {
		if !IsPlaceholder(id) {
			t.Errorf("%q is not a placeholder", id)
		}
	}
	for _, id := range []string{"u1", "a/b", "guest-42", "0x1", "1", "10", "nullable", "anonymous-7f3a", "undefined_user",
		"507f191e810c19729de860ea", "00000000-0000-0000-0000-000000000001"} {
		if IsPlaceholder(id) {
			t.Errorf("%q is a placeholder", id)
		}
	}
	if k, id, ok := Visitor("guest", "U"); !ok || k != schemas.IDKindUser || id != "U" {
		t.Errorf("Visitor(guest, U) = %s %s %v", k, id, ok)
	}
	if k, id, ok := Visitor("a", "U"); !ok || k != schemas.IDKindAnonymous || id != "a" {
		t.Errorf("Visitor(a, U) = %s %s %v", k, id, ok)
	}
	if _, _, ok := Visitor("undefined", "0"); ok {
		t.Error("Visitor of two placeholders")
	}
}

func TestEventTimes(t *testing.T) {
	recv := time.Date(2026, 11, 30, 12, 0, 0, 123_456_789, time.UTC)
	recvMs := recv.Truncate(time.Millisecond)
	ms := func(s string) int64 { t, _ := time.Parse(time.RFC3339Nano, s); return t.UnixMilli() }
	for _, tc := range []struct {
		name, fields string
		want         time.Time
		original     int64
	}{
		{"plausible", `"timestamp":"2026-11-30T10:00:00.5Z"`, time.Date(2026, 11, 30, 10, 0, 0, 5e8, time.UTC), ms("2026-11-30T10:00:00.5Z")},
		{"epoch zero", `"timestamp":"1970-01-01T00:00:00Z"`, recvMs, 0},
		{"before 2000", `"timestamp":"1999-12-31T23:59:59Z"`, recvMs, ms("1999-12-31T23:59:59Z")},
		{"2000 itself", `"timestamp":"2000-01-01T00:00:00Z"`, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), ms("2000-01-01T00:00:00Z")},
		{"23h ahead", `"timestamp":"2026-12-01T11:00:00Z"`, time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC), ms("2026-12-01T11:00:00Z")},
		{"25h ahead", `"timestamp":"2026-12-01T13:00:00Z"`, recvMs, ms("2026-12-01T13:00:00Z")},
		{"year 9999", `"timestamp":"9999-01-01T00:00:00Z"`, recvMs, ms("9999-01-01T00:00:00Z")},
		{"implausible timestamp, plausible originalTimestamp", `"timestamp":"1970-01-01T00:00:00Z","originalTimestamp":"2026-11-29T00:00:00Z"`,
			time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), 0},
		{"not a time", `"timestamp":"yesterday"`, recvMs, 0},
		{"none", `"x":1`, recvMs, 0},
		{"other zone", `"timestamp":"2026-11-30T10:00:00+02:00"`, time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), ms("2026-11-30T08:00:00Z")},
		{"nanoseconds", `"timestamp":"2026-11-30T10:00:00.123456789Z"`, time.Date(2026, 11, 30, 10, 0, 0, 123e6, time.UTC), ms("2026-11-30T10:00:00.123Z")},
		// A client whose clock is six years behind sent, 5 s after the call, to an edge that received it at recv.
		{"clock skew corrected", `"timestamp":"2020-01-01T00:00:00Z","sentAt":"2020-01-01T00:00:05Z"`, recvMs.Add(-5 * time.Second), ms("2020-01-01T00:00:00Z")},
		{"clock ahead corrected", `"timestamp":"2030-01-01T00:00:00Z","sentAt":"2030-01-01T00:01:00Z"`, recvMs.Add(-time.Minute), ms("2030-01-01T00:00:00Z")},
		{"originalTimestamp corrected", `"originalTimestamp":"2020-01-01T00:00:00Z","sentAt":"2020-01-01T00:00:01Z"`, recvMs.Add(-time.Second), ms("2020-01-01T00:00:00Z")},
		{"Segment-delivered: not corrected again", `"timestamp":"2026-11-30T11:00:00Z","originalTimestamp":"2020-01-01T00:00:00Z","sentAt":"2020-01-01T00:00:05Z","receivedAt":"2026-11-30T11:00:05Z"`,
			time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC), ms("2020-01-01T00:00:00Z")},
		{"a corrected time before 2000 is clamped", `"timestamp":"1990-01-01T00:00:00Z","sentAt":"2026-11-30T12:00:00Z"`, recvMs, ms("1990-01-01T00:00:00Z")},
		{"unparseable sentAt: no correction", `"timestamp":"2026-11-30T10:00:00Z","sentAt":"later"`, time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC), ms("2026-11-30T10:00:00Z")},
	} {
		got := EventTimes(textOf(t, tc.fields, "timestamp"), textOf(t, tc.fields, "originalTimestamp"), textOf(t, tc.fields, "sentAt"),
			textOf(t, tc.fields, "receivedAt"), recv)
		if got.EventMs != tc.want.UnixMilli() || (tc.original != 0 && got.OriginalMs != tc.original) {
			t.Errorf("%s: event %v original %d, want %v and %d", tc.name, time.UnixMilli(got.EventMs).UTC(), got.OriginalMs, tc.want, tc.original)
		}
		// And through Derive, the same.
		f := mustDerive(t, `{"type":"track","event":"E","anonymousId":"a",`+tc.fields+`}`)
		if want := EventTimes(textOf(t, tc.fields, "timestamp"), textOf(t, tc.fields, "originalTimestamp"),
			textOf(t, tc.fields, "sentAt"), textOf(t, tc.fields, "receivedAt"), received); f.EventTimeMs != want.EventMs {
			t.Errorf("%s: Derive's event time %d, EventTimes' %d", tc.name, f.EventTimeMs, want.EventMs)
		}
	}
}

// textOf is the decoded text of member name in the object `{fields}`, nil when absent.
func textOf(t *testing.T, fields, name string) []byte {
	t.Helper()
	v, ok := Lookup([]byte("{"+fields+"}"), []string{name})
	if !ok {
		return nil
	}
	return []byte(v)
}

func TestParseUTCMillisIsTimeParse(t *testing.T) {
	for _, s := range []string{"2026-11-30T05:00:00Z", "2026-11-30T05:00:00.1Z", "2026-11-30T05:00:00.123Z",
		"2026-11-30T05:00:00.123456789Z", "2024-02-29T23:59:59.999Z", "2000-01-01T00:00:00Z", "1969-12-31T23:59:59.5Z",
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		got, ok := parseUTCMillis([]byte(s))
		if err != nil || !ok || got != want.UnixMilli() {
			t.Errorf("%s: %d %v, time.Parse %d %v", s, got, ok, want.UnixMilli(), err)
		}
	}
	for _, s := range []string{"2023-02-29T00:00:00Z", "2026-13-01T00:00:00Z", "2026-11-30T24:00:00Z", "2026-11-30T05:00:00.Z",
		"2026-11-30T05:00:00+00:00", "2026-11-30t05:00:00Z", "2026-11-30 05:00:00Z", "2026-11-30T05:00:60Z"} {
		if _, ok := parseUTCMillis([]byte(s)); ok {
			t.Errorf("%s parsed by the fast path", s)
		}
	}
}

func TestLookup(t *testing.T) {
	p := []byte(`{"properties":{"form":{"name":"x\/y","n":1.50,"o":{"b":1,"a":2}},"list":[{"sku":"s0"},{"sku":"s1"}],"z":null},
		"context":{"page":{"url":"https://x"}},"dup":1,"dup":2}`)
	for _, tc := range []struct {
		path string
		want string
		ok   bool
	}{
		{"properties.form.name", "x/y", true},
		{"properties.form.n", "1.50", true},
		{"properties.form.o", `{"a":2,"b":1}`, true},
		{"properties.list.1.sku", "s1", true},
		{"properties.list.2.sku", "", false},
		{"properties.list.-1", "", false},
		{"properties.z", "", false},
		{"properties.nope", "", false},
		{"context.page.url", "https://x", true},
		{"dup", "2", true},
	} {
		got, ok := Lookup(p, strings.Split(tc.path, "."))
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
	for _, bad := range []string{``, `{`, `{"a":`, `{"a":[1,`, `[{"a":1}`, "{\"a\":\"\x01\"}"} {
		if _, ok := Lookup([]byte(bad), []string{"a"}); ok && bad != `[{"a":1}` {
			t.Errorf("%q: found a value in malformed JSON", bad)
		}
	}
}

// simplePath is an allocation-free shortcut of url.Parse's path; wherever it answers, it must agree.
func FuzzSimplePath(f *testing.F) {
	for _, u := range []string{"https://x.io/docs/a?b=1", "https://x.io", "http://a-b.c:8080/x/y#f", "https://x/%41", "x/y",
		"https://exa mple.com/p", "HTTPS://X.IO/P", "https://x.io?q", "ftp://h/p/../q"} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, u string) {
		p, ok := simplePath([]byte(u))
		if !ok {
			return
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("%q: simplePath %q, url.Parse fails: %v", u, p, err)
		}
		if string(p) != pu.Path {
			t.Fatalf("%q: simplePath %q, url.Parse %q", u, p, pu.Path)
		}
	})
}

// corpus returns the payloads of testdata/corpus and the seeds of the fuzz corpora that are JSON objects.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	files, _ := filepath.Glob("testdata/corpus/*.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = bytes.TrimSpace(b)
	}
	if len(out) == 0 {
		t.Fatal("no corpus in testdata/corpus")
	}
	return out
}

// The old processor's signal id (kept verbatim in legacy_ref_test.go) and LegacySignalID agree on every event
// the old edge accepted: the upgrade finds every id stored before it.
func TestLegacySignalIDIsTheOldProcessors(t *testing.T) {
	inputs := [][]byte{}
	for _, b := range corpus(t) {
		inputs = append(inputs, b)
	}
	for _, s := range canonicalCorpus {
		inputs = append(inputs, []byte(s))
	}
	inputs = append(inputs, []byte(`{"sentAt":1,"sent\u0041t":2,"receivedAt":3,"x":{"sentAt":4},"a\/b":5,"b":[{"z":1,"y":2}]}`),
		[]byte(`{"k":"\ud800","k":"dup"}`), []byte("{\"k\":\"\xff\"}"))
	for _, in := range inputs {
		checkLegacy(t, in)
	}
}

func checkLegacy(t *testing.T, in []byte) {
	t.Helper()
	var b Body
	if SplitBody(in, &b) != nil || b.Multi || len(b.Events) != 1 {
		return // the old edge refused it: no old id to find
	}
	got, ok := LegacySignalID(in)
	want, wok := refLegacyID(in)
	if ok != wok || got != want {
		t.Fatalf("%q: LegacySignalID %q %v, old processor %q %v", in, got, ok, want, wok)
	}
}

func FuzzLegacySignalID(f *testing.F) {
	for _, s := range canonicalCorpus {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"sentAt":1,"sent\u0041t":2,"receivedAt":3,"x":{"sentAt":4}}`))
	f.Fuzz(func(t *testing.T, in []byte) { checkLegacy(t, in) })
}

// BenchmarkDerive is everything the edge derives of the benchmark event: one canonicalizing pass, SHA-256, the
// fields and the time rule.
func BenchmarkDerive(b *testing.B) {
	d := Deriver{Unsafe: true}
	var f schemas.EventFields
	in := Input{Source: schemas.SourceSegment, ReceivedAt: received}
	cpuLoop(b, func() {
		if err := d.Derive(benchEvent, in, &f); err != nil {
			b.Fatal(err)
		}
	})
}

// The integer fast path of the event time rule decides every event as the time.Time one does.
func TestEventTimesMillisIsEventTimes(t *testing.T) {
	texts := [][]byte{nil, []byte("2026-11-30T05:00:00.000Z"), []byte("2026-11-30T04:59:59.5Z"),
		[]byte("2026-11-30T05:00:00Z"), []byte("2026-11-30T05:00:00.123456Z"), []byte("2026-12-01T06:00:00.001Z"),
		[]byte("2026-11-29T05:00:00.000Z"), []byte("1999-12-31T23:59:59.999Z"), []byte("2000-01-01T00:00:00.000Z"),
		[]byte("1970-01-01T00:00:00.000Z"), []byte("0001-01-01T00:00:00Z"), []byte("9999-12-31T23:59:59.999Z"),
		[]byte("1800-01-01T00:00:00Z"), []byte("2026-11-30T06:00:00+01:00"), []byte("garbage"),
		[]byte("2026-11-31T00:00:00Z"), []byte("2026-11-30T05:00:01.234Z"), []byte("2026-12-01T05:00:01.234Z"),
		[]byte("2026-12-01T05:00:01.235Z")}
	receivedAts := []time.Time{{}, time.Date(2026, 11, 30, 5, 0, 1, 234_567_890, time.UTC),
		time.Date(2026, 11, 30, 6, 0, 1, 0, time.FixedZone("x", 3600))}
	fast := 0
	for _, ts := range texts {
		for _, ot := range texts {
			for _, sent := range texts {
				for _, recvAt := range [][]byte{nil, []byte("2026-11-30T05:00:00.900Z")} {
					for _, rc := range receivedAts {
						r := rc.UTC().Truncate(time.Millisecond)
						got, ok := eventTimesMillis(ts, ot, sent, recvAt, r)
						if !ok {
							continue
						}
						fast++
						if want := eventTimes(ts, ot, sent, recvAt, r); got != want {
							t.Fatalf("ts %q ot %q sent %q receivedAt %q received %v: fast %+v, time.Time %+v", ts, ot, sent, recvAt, rc, got, want)
						}
					}
				}
			}
		}
	}
	if fast == 0 {
		t.Fatal("the fast path decided nothing")
	}
}
