package testenv

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// A simulator of Segment's Webhooks (Actions) destination: it sends exactly the requests the destination sends,
// single or batched, signed or not, so an endpoint can be tested against them without a Segment workspace.
//
// What it reproduces, read from segmentio/action-destinations (main, August 2026):
//   - packages/destination-actions/src/destinations/webhook/send/index.ts: `perform` sends one event,
//     request(url, {method, headers, json: payload.data}); `performBatch` sends
//     request(url, {method, headers, json: payload.map(({data}) => data)}), a JSON array of the events' data,
//     with url, method and headers taken from the first payload (batch_keys default to url, method, headers,
//     so a batch never mixes them). Methods: POST (default), PUT, PATCH. `data` defaults to the whole event.
//   - packages/destination-actions/src/destinations/webhook/index.ts, extendRequest: with a shared secret,
//     X-Signature = hex(HMAC-SHA1(sharedSecret, JSON.stringify(data))), where data is payload.data for a single
//     send and payload[0].data for a batch: a batch's signature covers its FIRST event only, not the body.
//     No secret (or no data): no X-Signature.
//   - packages/core/src/request-client.ts: the json option is sent as JSON.stringify(json) with content-type
//     application/json (set last, so a custom header cannot change it); headers merge in order base
//     (packages/core/src/create-request-client.ts: user-agent "Segment (Actions)"), extendRequest (X-Signature),
//     the request's own (the mapping's custom headers), later ones winning; default timeout 10 s.
//   - Batch size: the action's batch_size field defaults to 0 (the platform's default); Segment's docs
//     (segmentio/segment-docs, src/connections/destinations/catalog/actions-webhook/index.md, "Batch size
//     limits") give 1000 by default and at most 4000.
//
// Because JSON.stringify of an array is "[" + the stringified elements joined by "," + "]", the signature of a
// batch is the HMAC of exactly the bytes of the body's first array element.

// Webhooks (Actions) batching limits, from Segment's documentation (see above).
const (
	WebhookDefaultBatchSize = 1000
	WebhookMaxBatchSize     = 4000
	// webhookTimeout is actions-core's DEFAULT_REQUEST_TIMEOUT.
	webhookTimeout = 10 * time.Second
	// WebhookUserAgent is the user-agent actions-core sends.
	WebhookUserAgent = "Segment (Actions)"
)

// WebhookSim sends what the Webhooks (Actions) destination sends. The zero Method is POST.
type WebhookSim struct {
	URL    string
	Method string
	// SharedSecret signs requests (X-Signature) when set.
	SharedSecret string
	// Headers are the mapping's custom headers (e.g. X-Api-Secret); they override user-agent and X-Signature
	// as actions-core's merge does, never content-type.
	Headers map[string]string
	// BatchSize > 0 turns batching on with that many events per request (at most WebhookMaxBatchSize);
	// 0 sends one request per event, as the destination does with batching off.
	BatchSize int
	// Client defaults to one with the destination's 10 s timeout.
	Client *http.Client
}

// WebhookDelivery is one request the simulator sent and what it got back.
type WebhookDelivery struct {
	Method    string
	Body      []byte
	Signature string // X-Signature sent, "" when unsigned
	Events    int
	Status    int
	Answer    []byte
}

// WebhookSignature is the destination's X-Signature over data, the JSON.stringify form of one event's data.
func WebhookSignature(secret string, data []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// Stringify serialises v as JavaScript's JSON.stringify would for data that came from JSON: compact, and without
// Go's escaping of <, > and & (JSON.stringify writes them, and any non-ASCII character, as they are). Map keys
// come out sorted; a JS engine keeps insertion order, so for byte-exact replays pass raw events instead.
func Stringify(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (w WebhookSim) validate() (string, error) {
	method := strings.ToUpper(w.Method)
	if method == "" {
		method = http.MethodPost
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	default:
		return "", fmt.Errorf("webhook sim: method %q: the destination offers POST, PUT and PATCH only", w.Method)
	}
	if w.BatchSize < 0 || w.BatchSize > WebhookMaxBatchSize {
		return "", fmt.Errorf("webhook sim: batch size %d: Segment allows 1 to %d", w.BatchSize, WebhookMaxBatchSize)
	}
	if w.URL == "" {
		return "", errors.New("webhook sim: URL is required")
	}
	return method, nil
}

// Send delivers events, each one event's `data` as JSON (compacted here; give it in JSON.stringify's form),
// in order: one request per event, or per BatchSize events. It stops at the first transport error; a non-2xx
// answer is recorded in the delivery, not an error (Segment's platform decides about retries, not the action).
func (w WebhookSim) Send(ctx context.Context, events [][]byte) ([]WebhookDelivery, error) {
	method, err := w.validate()
	if err != nil {
		return nil, err
	}
	client := w.Client
	if client == nil {
		client = &http.Client{Timeout: webhookTimeout}
	}
	data := make([][]byte, len(events))
	for i, e := range events {
		var b bytes.Buffer
		if err := json.Compact(&b, e); err != nil {
			return nil, fmt.Errorf("webhook sim: event %d is not JSON: %w", i, err)
		}
		data[i] = b.Bytes()
	}
	per := w.BatchSize
	var out []WebhookDelivery
	for start := 0; start < len(data); {
		n := 1
		var body []byte
		if per > 0 {
			n = min(per, len(data)-start)
			body = append(append([]byte("["), bytes.Join(data[start:start+n], []byte(","))...), ']')
		} else {
			body = data[start]
		}
		d, err := w.deliver(ctx, client, method, body, data[start])
		if err != nil {
			return out, err
		}
		d.Events = n
		out = append(out, d)
		start += n
	}
	return out, nil
}

// deliver sends one request; first is the data the signature covers (the event, or a batch's first event).
func (w WebhookSim) deliver(ctx context.Context, client *http.Client, method string, body, first []byte) (WebhookDelivery, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.URL, bytes.NewReader(body))
	if err != nil {
		return WebhookDelivery{}, fmt.Errorf("webhook sim: building the request: %w", err)
	}
	req.Header.Set("User-Agent", WebhookUserAgent)
	d := WebhookDelivery{Method: method, Body: body}
	if w.SharedSecret != "" {
		d.Signature = WebhookSignature(w.SharedSecret, first)
		req.Header.Set("X-Signature", d.Signature)
	}
	for k, v := range w.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	d.Signature = req.Header.Get("X-Signature")
	res, err := client.Do(req)
	if err != nil {
		return d, fmt.Errorf("webhook sim: %s %s: %w", method, w.URL, err)
	}
	defer res.Body.Close()
	d.Status = res.StatusCode
	d.Answer, _ = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return d, nil
}

// WebhookEvents returns n distinct Segment track events as the destination's default mapping (`data` = the
// whole event, '@path': '$.') carries them: each about 1 KB, shaped like analytics.js's, with a non-ASCII
// character and a "<" so that an endpoint that re-serialises instead of hashing the bytes it got is caught.
func WebhookEvents(n int, anonPrefix string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"anonymousId":"%s-%d","context":{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"next-1.84.3"},"locale":"en-US","page":{"path":"/pricing","referrer":"https://www.google.com/","search":"?utm_source=ads","title":"Pricing <Team>","url":"https://shop.example/pricing?utm_source=ads"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36","timezone":"Europe/Berlin"},"event":"Pricing Viewed","integrations":{},"messageId":"ajs-next-%016d-webhook-sim","originalTimestamp":"2026-11-30T09:00:00.000Z","properties":{"plan":"team","seats":%d,"currency":"EUR","owner":"Zoë","path":"/pricing","variant":"b"},"receivedAt":"2026-11-30T09:00:01.204Z","sentAt":"2026-11-30T09:00:00.950Z","timestamp":"2026-11-30T09:00:00.254Z","type":"track","userId":null,"version":2,"writeKey":"wk_browser_public","channel":"client","projectId":"proj_sim"}`,
			anonPrefix, i, i, i%50+1)
	}
	return out
}
