package ingest

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/schemas"
)

// TestWebhookArrivesOnKeyPartition posts a Segment batch to the real broker and checks that exactly the accepted
// events arrive, byte for byte, keyed tenant|anonymousId, on the partition that key hashes to.
func TestWebhookArrivesOnKeyPartition(t *testing.T) {
	e := startEdge(t, nil)
	const n = 60
	want := map[string][]byte{}
	body := []byte{'['}
	for i := range n {
		anon := fmt.Sprintf("anon-%d", i)
		ev := trackEvent(anon, i)
		want[anon] = ev
		if i > 0 {
			body = append(body, ",\n  "...)
		}
		body = append(body, ev...)
	}
	body = append(body, ']')
	resp, r := post(t, e.webhook("dev-key"), body, nil)
	if resp.StatusCode != 200 || r.Accepted != n || len(r.Rejected) != 0 {
		t.Fatalf("got %d %+v, want 200 accepted %d", resp.StatusCode, r, n)
	}
	topic := e.kafka.Topic(schemas.TopicRaw)
	recs, evs := e.readRaw(t)
	if len(recs) != n {
		t.Fatalf("read %d records, want exactly %d", len(recs), n)
	}
	seen := map[string]bool{}
	for i, rec := range recs {
		ev := evs[i]
		tenant, anon, ok := schemas.SplitKey(rec.Key)
		if !ok || tenant != "dev" {
			t.Fatalf("key %q", rec.Key)
		}
		if !bytes.Equal(ev.Payload, want[anon]) {
			t.Errorf("payload of %s changed:\n got %s\nwant %s", anon, ev.Payload, want[anon])
		}
		if ev.Tenant != "dev" || ev.KeyID != "dev" || ev.Source != schemas.SourceSegment || ev.ReceivedAt.IsZero() {
			t.Errorf("envelope %+v", ev)
		}
		if p := expectedPartition(topic, schemas.RoutingKey("dev", anon), 6); rec.Partition != p {
			t.Errorf("%s on partition %d, want %d", anon, rec.Partition, p)
		}
		seen[anon] = true
	}
	if len(seen) != n {
		t.Errorf("%d distinct events, want %d", len(seen), n)
	}
}

// TestWebhookStatusCodes covers the answers of the webhook route that need no special setup.
func TestWebhookStatusCodes(t *testing.T) {
	e := startEdge(t, nil)
	ev := trackEvent("a1", 1)
	for _, tc := range []struct {
		name string
		key  string
		body string
		hdr  map[string]string
		code int
		msg  string // substring of the error
	}{
		{name: "single event", key: "dev-key", body: string(ev), code: 200},
		{name: "not json", key: "dev-key", body: "hello", code: 400, msg: "invalid JSON"},
		{name: "truncated json", key: "dev-key", body: `{"type":"track"`, code: 400, msg: "unexpected end"},
		{name: "scalar", key: "dev-key", body: `42`, code: 400, msg: "expected a JSON object"},
		{name: "empty", key: "dev-key", body: ``, code: 400, msg: "empty body"},
		{name: "trailing data", key: "dev-key", body: string(ev) + "x", code: 400, msg: "after the JSON value"},
		{name: "empty array", key: "dev-key", body: `[]`, code: 400, msg: "no events"},
		{name: "single invalid segment event", key: "dev-key", body: `{"type":"track","event":"x"}`, code: 400, msg: "userId or anonymousId"},
		{name: "unknown key", key: "nope", body: string(ev), code: 401, msg: "invalid API key"},
		{name: "revoked key", key: "revoked-key", body: string(ev), code: 401, msg: "invalid API key"},
		{name: "secret missing", key: "secret-key", body: string(ev), code: 401, msg: "invalid API key"},
		{name: "secret wrong", key: "secret-key", body: string(ev), hdr: map[string]string{"X-Api-Secret": "nope"}, code: 401},
		{name: "secret right", key: "secret-key", body: string(ev), hdr: map[string]string{"X-Api-Secret": "s3cret"}, code: 200},
		{name: "other endpoint type", key: "other-key", body: string(ev), code: 403, msg: "not for the signal-staging"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := post(t, e.webhook(tc.key), []byte(tc.body), tc.hdr)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, r, tc.code)
			}
			if tc.msg != "" && !strings.Contains(r.Error, tc.msg) {
				t.Errorf("error %q does not say %q", r.Error, tc.msg)
			}
		})
	}
}
