package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/testenv"
)

// TestWebhookBatchSignature checks X-Signature as the Webhooks (Actions) destination computes it: over the
// whole body for a single send, over the first event only for a batch (JSON.stringify(payload[0].data)); a
// signature over any other part is refused, and a key with a secret too needs X-Api-Secret on top.
func TestWebhookBatchSignature(t *testing.T) {
	e := startEdgeWith(t, fmt.Sprintf(sourceKeys, HashSecret("s3cret")), nil)
	evs := testenv.WebhookEvents(3, "sig")
	batch := append(append([]byte("["), bytes.Join(evs, []byte(","))...), ']')
	for _, tc := range []struct {
		name string
		key  string
		body []byte
		hdr  map[string]string
		code int
	}{
		{name: "single, signed over the body", key: "signed-key", body: evs[0], hdr: sig("shh", evs[0]), code: 200},
		{name: "batch, signed over its first event", key: "signed-key", body: batch, hdr: sig("shh", evs[0]), code: 200},
		{name: "batch, signed over the whole body", key: "signed-key", body: batch, hdr: sig("shh", batch), code: 200},
		{name: "batch, signed over its second event", key: "signed-key", body: batch, hdr: sig("shh", evs[1]), code: 401},
		{name: "batch, wrong secret", key: "signed-key", body: batch, hdr: sig("nope", evs[0]), code: 401},
		{name: "batch, not hex", key: "signed-key", body: batch, hdr: map[string]string{"X-Signature": strings.Repeat("z", 40)}, code: 401},
		{name: "signature and secret required, secret missing", key: "both-key", body: batch, hdr: sig("shh", evs[0]), code: 401},
		{name: "signature and secret", key: "both-key", body: batch,
			hdr: map[string]string{"X-Signature": testenv.WebhookSignature("shh", evs[0]), "X-Api-Secret": "s3cret"}, code: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := post(t, e.webhook(tc.key), tc.body, tc.hdr)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, r, tc.code)
			}
		})
	}
}

func sig(secret string, data []byte) map[string]string {
	return map[string]string{"X-Signature": testenv.WebhookSignature(secret, data)}
}

// TestAnsweredBeforeTheBody: what the headers decide is answered without waiting for the body, so a sender that
// announces a large body and never sends it holds nothing: an unknown key, a signed key without X-Signature, a
// key whose secret is missing, a browser key on the webhook route.
func TestAnsweredBeforeTheBody(t *testing.T) {
	e := startEdgeWith(t, fmt.Sprintf(sourceKeys, HashSecret("s3cret")), nil)
	addr := strings.TrimPrefix(e.url, "http://")
	for _, tc := range []struct {
		name, path, hdr string
		code            int
	}{
		{"unknown key", "/api/signal-staging/webhook/nope", "", 401},
		{"signed key, no signature", "/api/signal-staging/webhook/signed-key", "", 401},
		{"signed key, malformed signature", "/api/signal-staging/webhook/signed-key", "X-Signature: abc\r\n", 401},
		{"secret missing", "/api/signal-staging/webhook/both-key", "X-Signature: " + strings.Repeat("0", 40) + "\r\n", 401},
		{"browser key on the webhook route", "/api/signal-staging/webhook/browser-key", "", 403},
		{"over the request limit", "/v1/batch", "Authorization: Basic ZGV2LWtleTo=\r\n", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			length := 400 << 10
			if tc.code == 413 {
				length = 600 << 10
			}
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n[", tc.path, tc.hdr, length)
			// Far below the body read timeouts: an answer this soon was decided on the headers.
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.code)
			}
		})
	}
}

// TestWebhookBigBatches: the destination's default batch (1000 events of about 1 KB) and its largest (4000)
// are accepted whole with the default limits (they got 413 when the webhook route had the 500 KB limit), and
// every event is on signals.raw once.
func TestWebhookBigBatches(t *testing.T) {
	e := startEdge(t, nil)
	sent := 0
	for _, n := range []int{testenv.WebhookDefaultBatchSize, testenv.WebhookMaxBatchSize} {
		evs := testenv.WebhookEvents(n, fmt.Sprint("big", n))
		body := append(append([]byte("["), bytes.Join(evs, []byte(","))...), ']')
		resp, r := post(t, e.webhook("dev-key"), body, nil)
		if resp.StatusCode != 200 || r.Accepted != n || len(r.Rejected) != 0 {
			t.Fatalf("%d events (%d bytes): %d %+v", n, len(body), resp.StatusCode, r.Error)
		}
		sent += n
	}
	if recs, _ := e.readRaw(t); len(recs) != sent {
		t.Fatalf("signals.raw has %d records, want %d", len(recs), sent)
	}
}
