package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// checkOne runs the edge's checks on one event as a request of the route with the given envelope would.
func checkOne(t *testing.T, ev string, rt *route, env contract.Envelope) (prep, *reqState) {
	t.Helper()
	st := statePool.New().(*reqState)
	e := contract.Inspect([]byte(ev))
	rq := &request{rt: rt, key: &Key{ID: "k1", Tenant: "acme"}, received: time.Date(2026, 11, 30, 5, 0, 1, 0, time.UTC),
		requestID: "r1", maxEvent: 1000, rewrite: contract.Rewrite{Type: rt.impliedType, Context: env.Context, SentAt: env.SentAt}}
	p := check(st, &e, rq, false, nil)
	return p, st
}

func TestCheckEvent(t *testing.T) {
	webhook := &route{name: "webhook"}
	v1track := &route{name: "v1_track", impliedType: "track", segmentOnly: true}
	for _, tc := range []struct {
		name    string
		ev      string
		rt      *route
		ctx     string
		id      string // routing id
		segment bool
		payload string // when rewritten
		reason  string
	}{
		{name: "anonymous first", ev: `{"type":"track","anonymousId":"a","userId":"u","messageId":"m"}`, rt: webhook, id: "a", segment: true},
		{name: "user next", ev: `{"type":"identify","anonymousId":"","userId":"u","messageId":"m"}`, rt: webhook, id: "u", segment: true},
		{name: "placeholder anonymousId routes by userId", ev: `{"type":"track","anonymousId":"guest","userId":"U","event":"X"}`, rt: webhook, id: "U", segment: true},
		{name: "placeholders route by messageId", ev: `{"type":"track","anonymousId":"undefined","userId":"null","messageId":"m1"}`, rt: webhook, id: "m1", segment: true},
		{name: "numeric user", ev: `{"type":"identify","userId":42}`, rt: webhook, id: "42", segment: true},
		{name: "escaped id", ev: `{"type":"page","anonymousId":"a\u00e9"}`, rt: webhook, id: "aé", segment: true},
		{name: "escaped slash", ev: `{"type":"page","anonymousId":"a\/b"}`, rt: webhook, id: "a/b", segment: true},
		{name: "message id makes it segment", ev: `{"messageId":"m","x":1}`, rt: webhook, reason: "type must be one of"},
		{name: "null type", ev: `{"type":null,"anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "bad type", ev: `{"type":"launch","anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "non-string type", ev: `{"type":1,"anonymousId":"a"}`, rt: webhook, reason: "type must be one of"},
		{name: "object id", ev: `{"type":"track","anonymousId":{}}`, rt: webhook, reason: "anonymousId must be a string"},
		{name: "duplicate name", ev: `{"type":"track","anonymousId":"a","anonymousId":"b"}`, rt: webhook, reason: `duplicate member name "anonymousId"`},
		{name: "invalid UTF-8", ev: "{\"type\":\"track\",\"anonymousId\":\"a\",\"event\":\"\xff\"}", rt: webhook, reason: "invalid UTF-8"},
		{name: "lone surrogate", ev: `{"type":"track","anonymousId":"a","event":"\ud800"}`, rt: webhook, reason: "lone UTF-16 surrogate"},
		{name: "number beyond a double", ev: `{"type":"track","anonymousId":"a","properties":{"n":1e400}}`, rt: webhook, reason: "out of the range"},
		{name: "implied type", ev: `{"anonymousId":"a"}`, rt: v1track, id: "a", segment: true, payload: `{"type":"track","anonymousId":"a"}`},
		{name: "implied type mismatch", ev: `{"type":"page","anonymousId":"a"}`, rt: v1track, reason: "does not match the endpoint"},
		{name: "implied type empty object", ev: `{}`, rt: v1track, reason: "userId or anonymousId"},
		{name: "context inserted", ev: `{"type":"track","userId":"u"}`, rt: webhook, ctx: `{"a":1}`, id: "u", segment: true,
			payload: `{"context":{"a":1},"type":"track","userId":"u"}`},
		{name: "context merged", ev: `{"type":"track","userId":"u","context":{"a":2,"b":3}}`, rt: webhook, ctx: `{"a":1,"c":{"d":4}}`,
			id: "u", segment: true, payload: `{"type":"track","userId":"u","context":{"a":2,"b":3,"c":{"d":4}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var env contract.Envelope
			if tc.ctx != "" {
				env.Context = []byte(tc.ctx)
			}
			p, st := checkOne(t, tc.ev, tc.rt, env)
			if tc.reason != "" {
				if !strings.Contains(p.reason, tc.reason) || p.kind != kindInvalid {
					t.Fatalf("reason %q kind %d, want %q", p.reason, p.kind, tc.reason)
				}
				return
			}
			if p.reason != "" {
				t.Fatalf("rejected: %s", p.reason)
			}
			key := st.slab[p.keyOff:p.valOff]
			if want := schemas.RoutingKey("acme", tc.id); !bytes.Equal(key, want) || p.segment != tc.segment {
				t.Errorf("key %q segment %v, want %q %v", key, p.segment, want, tc.segment)
			}
			var ev schemas.RawEvent
			if err := schemas.DecodeRawEvent(st.slab[p.valOff:p.end], &ev); err != nil {
				t.Fatal(err)
			}
			want := tc.payload
			if want == "" {
				want = tc.ev
			}
			if string(ev.Payload) != want {
				t.Errorf("payload %s, want %s", ev.Payload, want)
			}
			if ev.Tenant != "acme" || ev.KeyID != "k1" || ev.RequestID != "r1" || ev.Contract != contract.Version || ev.SignalID == "" {
				t.Errorf("record %+v", ev)
			}
		})
	}
}

// A generic webhook without ids routes by its signal id, so a retry re-serialized in another key order lands on
// the same partition.
func TestWebhookWithoutIDsRoutesByContent(t *testing.T) {
	webhook := &route{name: "webhook"}
	p1, st1 := checkOne(t, `{"form":"x","n":1.0}`, webhook, contract.Envelope{})
	p2, st2 := checkOne(t, `{ "n":1, "form":"x" }`, webhook, contract.Envelope{})
	k1, k2 := st1.slab[p1.keyOff:p1.valOff], st2.slab[p2.keyOff:p2.valOff]
	if !bytes.Equal(k1, k2) || len(k1) != len("acme|")+16 {
		t.Fatalf("keys %q and %q, want one 16-hex-digit content key", k1, k2)
	}
}

func TestRoutingKeyMatchesSchemas(t *testing.T) {
	if got, want := routingKey(nil, "t", []byte("id")), schemas.RoutingKey("t", "id"); !bytes.Equal(got, want) {
		t.Fatalf("%q != %q", got, want)
	}
}

// An array body is read in one pass; an event in it whose inside is not valid JSON is one rejected event, the
// others go through (a batch of the Webhooks destination is never lost for one bad event).
func TestArrayWithAnInvalidEvent(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keys, []byte(`{"keys":{"dev-key":{"id":"dev","tenant":"dev","endpoint_type":"signal-staging"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{KeysFile: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.Close()
	var got []*kgo.Record
	s.prod = recordingAck{&got}
	body := `[{"type":"track","anonymousId":"a","event":"Bad","properties":{"x":tru}},` + string(trackEvent("b", 1)) +
		`,{"type":"track","anonymousId":"c","event":"Dup","event":"Dup"},7]`
	req, _ := http.NewRequest(http.MethodPost, "/api/signal-staging/webhook/dev-key", strings.NewReader(body))
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var r struct {
		Accepted int
		Rejected []struct {
			Index  int
			Reason string
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Accepted != 1 || len(r.Rejected) != 3 || !strings.Contains(r.Rejected[0].Reason, "invalid JSON") ||
		!strings.Contains(r.Rejected[1].Reason, "duplicate member name") || r.Rejected[2].Index != 3 {
		t.Fatalf("answer %+v", r)
	}
	raws := 0
	for _, rec := range got {
		if strings.HasSuffix(rec.Topic, schemas.TopicRaw) {
			raws++
		}
	}
	if raws != 1 || len(got) != 4 {
		t.Fatalf("%d records, %d to signals.raw; want 1 event and 3 dead letters", len(got), raws)
	}
}

// recordingAck acknowledges every record at once and keeps a copy (the handler reuses its records).
type recordingAck struct{ recs *[]*kgo.Record }

func (a recordingAck) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c := *r
	c.Key, c.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
	*a.recs = append(*a.recs, &c)
	promise(r, nil)
}
