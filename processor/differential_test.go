package processor

import (
	"bytes"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/analytics-go/v3"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// The differential test of the event contract: every payload of one corpus goes through the edge's path (split,
// rewrite, derive strictly: what ingest writes) and through the processor's path for a record without derived
// fields (the same payload as a raw_event.v1 record, derived leniently by the processor), and the two must find
// identical fields and make identical signals. Whatever the edge accepts, the processor processes, on both paths.
// The corpus: testdata/corpus of schemas/contract (Segment's spec examples and the cases), the fuzz
// corpora of schemas/contract, and the bodies analytics-go sends (TestDifferentialAnalyticsGo).

// edgeAccept splits body as the edge does and returns the records it would write (nil for what it refuses).
func edgeAccept(t testing.TB, body []byte, received time.Time) []*schemas.RawEvent {
	var b contract.Body
	if contract.SplitBody(body, &b) != nil {
		return nil
	}
	rw := contract.Rewrite{Context: b.Envelope.Context, SentAt: b.Envelope.SentAt}
	var out []*schemas.RawEvent
	var d contract.Deriver
	for i := range b.Events {
		e := &b.Events[i]
		if !e.IsObject {
			continue
		}
		payload := e.Raw
		if rw.Needed(e) {
			payload = contract.AppendEvent(nil, e, &rw)
		}
		source := schemas.SourceWebhook
		if e.Type != nil || e.AnonymousID != nil || e.MessageID != nil {
			source = schemas.SourceSegment
		}
		raw := &schemas.RawEvent{Tenant: "t", KeyID: "k1", Source: source, ReceivedAt: received, Payload: bytes.Clone(payload)}
		if err := d.Derive(raw.Payload, contract.Input{Source: source, ReceivedAt: received}, &raw.EventFields); err != nil {
			if tt, ok := t.(*testing.T); ok && testing.Verbose() {
				tt.Logf("the edge refuses %q: %v", raw.Payload, err)
			}
			continue
		}
		out = append(out, raw)
	}
	return out
}

// checkBothPaths runs every event the edge accepts of body through both paths.
func checkBothPaths(t testing.TB, body []byte) int {
	t.Helper()
	received := time.Date(2026, 11, 30, 5, 0, 0, 0, time.UTC)
	raws := edgeAccept(t, body, received)
	for _, raw := range raws {
		// The processor's path: the same payload without fields, derived by the processor's reader.
		var r eventReader
		ev, err := r.read(v1Raw(raw))
		if err != nil {
			t.Fatalf("the edge accepted %q, the processor refuses it as a v1 record: %v", raw.Payload, err)
		}
		if ev.EventFields != raw.EventFields {
			t.Fatalf("%q: fields differ\nedge      %+v\nprocessor %+v", raw.Payload, raw.EventFields, ev.EventFields)
		}
		// Both records process, and make the same signal (but for the id a v1 record keeps, its legacy one).
		var sigs [2]*schemas.Signal
		for k, rec := range []*schemas.RawEvent{raw, v1Raw(raw)} {
			c := NewCore(CoreConfig{Now: func() time.Time { return received }})
			em := &recorder{}
			enc := schemas.AppendRawEvent(nil, rec)
			var back schemas.RawEvent
			if k == 1 {
				enc = encodeV1(t, rec)
			}
			if err := schemas.DecodeRawEvent(enc, &back); err != nil {
				t.Fatalf("decoding the record of %q: %v", rec.Payload, err)
			}
			if err := c.ProcessEvent(memState{}, em, 0, 1, nil, &back); err != nil {
				t.Fatalf("the edge accepted %q, the processor fails on it (record %d): %v", rec.Payload, k, err)
			}
			if len(em.signals) != 1 {
				t.Fatalf("%q: %d signals", rec.Payload, len(em.signals))
			}
			sigs[k] = &em.signals[0]
		}
		if legacy, ok := contract.LegacySignalID(raw.Payload); ok && sigs[1].SignalID != legacy {
			t.Fatalf("%q: a v1 record's signal id %s, want its legacy id %s", raw.Payload, sigs[1].SignalID, legacy)
		}
		sigs[1].SignalID = sigs[0].SignalID
		if !reflect.DeepEqual(sigs[0], sigs[1]) {
			t.Fatalf("%q: signals differ\nedge record %+v\nv1 record   %+v", raw.Payload, *sigs[0], *sigs[1])
		}
	}
	return len(raws)
}

// differentialCorpus is the corpus: contract's testdata/corpus, the seeds of its fuzz corpora, and what
// Segment's own clients sent (testenv/testdata/clients: every request body of analytics-node, analytics-python,
// analytics-go and analytics.js, and each event on its own).
func differentialCorpus(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	files, _ := filepath.Glob("../schemas/contract/testdata/corpus/*.json")
	seeds, _ := filepath.Glob("../schemas/contract/testdata/fuzz/*/*")
	bodies, _ := filepath.Glob("../testenv/testdata/clients/*/[0-9]*.json")
	events, _ := filepath.Glob("../testenv/testdata/clients/*/events/*.json")
	if len(bodies) < 6 || len(events) < 6 {
		t.Fatalf("captured client payloads: %d bodies, %d events", len(bodies), len(events))
	}
	for _, f := range append(append(append(files, seeds...), bodies...), events...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(f, ".json") {
			for i, arg := range fuzzArgs(b) {
				out[f+"#"+strconv.Itoa(i)] = []byte(arg)
			}
			continue
		}
		out[f] = b
	}
	if len(files) < 10 {
		t.Fatalf("corpus has %d files", len(files))
	}
	return out
}

// fuzzArgs reads the []byte and string arguments of a go test fuzz v1 corpus file.
func fuzzArgs(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, prefix := range []string{"[]byte(", "string("} {
			if strings.HasPrefix(line, prefix) && strings.HasSuffix(line, ")") {
				if s, err := strconv.Unquote(line[len(prefix) : len(line)-1]); err == nil {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func TestDifferentialCorpus(t *testing.T) {
	accepted := 0
	captured := 0
	for name, body := range differentialCorpus(t) {
		t.Run(filepath.Base(name), func(t *testing.T) {
			n := checkBothPaths(t, body)
			accepted += n
			if strings.Contains(name, "testdata/clients") {
				if n == 0 {
					t.Errorf("the edge refuses what %s sent", name)
				}
				captured += n
			}
		})
	}
	// Batches of the corpus, as the Webhooks destination and /v1/batch send them.
	files, _ := filepath.Glob("../schemas/contract/testdata/corpus/*.json")
	var evs [][]byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		evs = append(evs, bytes.TrimSpace(b))
	}
	arr := append(append([]byte("["), bytes.Join(evs, []byte(","))...), ']')
	accepted += checkBothPaths(t, arr)
	batch := append(append([]byte(`{"batch":`), arr...), `,"context":{"library":{"name":"analytics-go","version":"3.3.0"},"ip":"1.2.3.4"},"sentAt":"2026-11-30T04:59:59Z","messageId":"b1"}`...)
	accepted += checkBothPaths(t, batch)
	if accepted < 2*len(files) || captured < 40 {
		t.Fatalf("only %d events accepted by the edge, %d of the captured clients'", accepted, captured)
	}
}

// FuzzEdgeToProcessor: whatever the edge accepts, the processor processes without dead-lettering it for its
// shape, from the edge's record and from a v1 record of the same payload, with the same fields and signal.
// Run: go test ./processor -run '^$' -fuzz '^FuzzEdgeToProcessor$' -fuzztime 30s
func FuzzEdgeToProcessor(f *testing.F) {
	for _, body := range differentialCorpus(f) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkBothPaths(t, body) })
}

// TestDifferentialAnalyticsGo runs what Segment's Go library actually sends (its /v1/batch bodies, with the batch
// envelope's context and sentAt, captured from a local server) through both paths.
func TestDifferentialAnalyticsGo(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	client, err := analytics.NewWithConfig("k", analytics.Config{Endpoint: srv.URL, BatchSize: 6, Interval: time.Hour,
		DefaultContext: &analytics.Context{App: analytics.AppInfo{Name: "shop"}, Library: analytics.LibraryInfo{Name: "analytics-go", Version: "3.3.0"}},
		Logger:         analytics.StdLogger(log.New(io.Discard, "", 0))})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 30, 4, 59, 0, 0, time.UTC)
	msgs := []analytics.Message{
		analytics.Track{AnonymousId: "a-1", Event: "Order Completed", Timestamp: at,
			Properties: analytics.NewProperties().SetRevenue(19.99).Set("order_id", int64(9007199254740993)).Set("tags", []string{"a/b", "é"})},
		analytics.Identify{AnonymousId: "a-1", UserId: "u-1", Timestamp: at, Traits: analytics.NewTraits().SetEmail("Ann@Acme.io").SetName("Ann")},
		analytics.Page{AnonymousId: "guest", UserId: "u-2", Name: "Pricing", Properties: analytics.NewProperties().SetURL("https://x.co/pricing?x=1")},
		analytics.Screen{AnonymousId: "a-3", Name: "Home", Context: &analytics.Context{Locale: "de-DE", Timezone: "Europe/Berlin"}},
		analytics.Group{AnonymousId: "a-1", GroupId: "acme", Traits: analytics.NewTraits().SetEmail("billing@acme.io").Set("plan", "enterprise")},
		analytics.Alias{PreviousId: "a-1", UserId: "u-1"},
		analytics.Track{UserId: "u-1", Event: "Signed Up", Context: &analytics.Context{Campaign: analytics.CampaignInfo{Name: "spring", Source: "google", Medium: "cpc"},
			Page: analytics.PageInfo{Referrer: "https://google.com/", Path: "/signup"}, UserAgent: "Go-http-client/1.1", IP: net.ParseIP("203.0.113.9")}},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range bodies {
		n += checkBothPaths(t, b)
	}
	if n != len(msgs) {
		t.Fatalf("%d of %d events accepted from %d bodies", n, len(msgs), len(bodies))
	}
}
