package ingest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/testenv"
)

// sourceKeys adds a browser key and a doubly-secured webhook key to the usual registry.
const sourceKeys = `{"keys": {
  "dev-key":     {"id": "dev", "tenant": "dev", "endpoint_type": "signal-staging"},
  "browser-key": {"id": "web", "tenant": "shop", "endpoint_type": "signal-staging", "public": true,
                  "allowed_origins": ["http://shop.example"]},
  "signed-key":  {"id": "sig", "tenant": "acme", "endpoint_type": "signal-staging", "signing_secret": "shh"},
  "both-key":    {"id": "both", "tenant": "acme", "endpoint_type": "signal-staging", "signing_secret": "shh",
                  "secret_hash": "%s"}
}}`

// startEdgeWith runs an edge on its own topics with the registry content keys.
func startEdgeWith(t *testing.T, keys string, mod func(*Config)) *edge {
	t.Helper()
	k := testenv.NewKafka(t, 6)
	path := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, path, keys)
	return runEdge(t, k, path, mod)
}

// send is one request with any method, returning the status, the answer's headers and body.
func send(t *testing.T, method, url string, body []byte, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestTrackingAPISurface sends what Segment's sources send (analytics.js's short routes, text/plain bodies with
// the writeKey in them and "userId": null, CORS preflights; Basic auth with and without the colon; PUT and
// PATCH from the Webhooks destination) and checks each answer, the CORS headers on errors too, and that
// exactly the accepted events reach signals.raw.
func TestTrackingAPISurface(t *testing.T) {
	e := startEdgeWith(t, fmt.Sprintf(sourceKeys, HashSecret("s3cret")), nil)
	const origin = "http://shop.example"
	noColon := "Basic " + base64.StdEncoding.EncodeToString([]byte("dev-key"))
	ev := func(extra string) []byte {
		return fmt.Appendf(nil, `{"anonymousId":"anon-%s","userId":null,"messageId":"m-%s"%s}`, extra, extra, extra2(extra))
	}
	browser := map[string]string{"Content-Type": "text/plain", "Origin": origin}
	withKey := func(h map[string]string, k string) map[string]string {
		out := map[string]string{"Authorization": k}
		for n, v := range h {
			out[n] = v
		}
		return out
	}
	accepted := 0
	for _, tc := range []struct {
		name, method, path string
		body               []byte
		hdr                map[string]string
		code, events       int
		cors               bool // Access-Control-Allow-Origin expected
	}{
		{name: "short track, writeKey in the body", method: "POST", path: "/v1/t",
			body: []byte(`{"type":"track","event":"E","anonymousId":"w1","userId":null,"writeKey":"browser-key"}`),
			hdr:  browser, code: 200, events: 1, cors: true},
		{name: "short page, Basic from the browser", method: "POST", path: "/v1/p", body: ev("p1"),
			hdr: withKey(browser, basic("browser-key")["Authorization"]), code: 200, events: 1, cors: true},
		{name: "short identify", method: "POST", path: "/v1/i", body: []byte(`{"anonymousId":"w1","traits":{"email":"a@b.co"},"writeKey":"browser-key"}`),
			hdr: browser, code: 200, events: 1, cors: true},
		{name: "short screen, group, alias", method: "POST", path: "/v1/s", body: []byte(`{"anonymousId":"w2","name":"Home","writeKey":"browser-key"}`),
			hdr: browser, code: 200, events: 1, cors: true},
		{name: "short group", method: "POST", path: "/v1/g", body: []byte(`{"anonymousId":"w2","groupId":"g","writeKey":"browser-key"}`),
			hdr: browser, code: 200, events: 1, cors: true},
		{name: "short alias", method: "POST", path: "/v1/a", body: []byte(`{"userId":"u2","previousId":"w2","writeKey":"browser-key"}`),
			hdr: browser, code: 200, events: 1, cors: true},
		{name: "short batch, writeKey in the envelope", method: "POST", path: "/v1/b",
			body: []byte(`{"writeKey":"browser-key","batch":[{"type":"track","event":"A","anonymousId":"b1","writeKey":"browser-key"},{"type":"page","anonymousId":"b1"}],"sentAt":"2026-12-01T10:00:00.000Z"}`),
			hdr:  browser, code: 200, events: 2, cors: true},
		{name: "unknown writeKey", method: "POST", path: "/v1/t", body: []byte(`{"type":"track","event":"E","anonymousId":"x","writeKey":"nope"}`),
			hdr: browser, code: 401, cors: true},
		{name: "no key at all", method: "POST", path: "/v1/t", body: []byte(`{"type":"track","event":"E","anonymousId":"x"}`),
			hdr: browser, code: 401, cors: true},
		{name: "origin the key does not allow", method: "POST", path: "/v1/t",
			body: []byte(`{"type":"track","event":"E","anonymousId":"x","writeKey":"browser-key"}`),
			hdr:  map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, code: 403, cors: true},
		{name: "server key from a browser", method: "POST", path: "/v1/t", body: ev("x"),
			hdr: withKey(browser, basic("dev-key")["Authorization"]), code: 403, cors: true},
		{name: "public key on the webhook route", method: "POST", path: "/api/signal-staging/webhook/browser-key", body: ev("x"), code: 403},
		{name: "Basic without the colon", method: "POST", path: "/v1/track", body: ev("nc"),
			hdr: map[string]string{"Authorization": noColon}, code: 200, events: 1},
		{name: "import", method: "POST", path: "/v1/import", body: []byte(`{"batch":[{"type":"track","event":"Old","userId":"u-imp","timestamp":"2024-01-01T00:00:00Z"}]}`),
			hdr: basic("dev-key"), code: 200, events: 1},
		{name: "gzip batch", method: "POST", path: "/v1/batch", body: gz(t, []byte(`{"batch":[{"type":"track","event":"Z","userId":"u-gz"}]}`)),
			hdr: map[string]string{"Authorization": noColon, "Content-Encoding": "gzip"}, code: 200, events: 1},
		{name: "webhook PUT", method: "PUT", path: "/api/signal-staging/webhook/dev-key", body: ev("put"), code: 200, events: 1},
		{name: "webhook PATCH", method: "PATCH", path: "/api/signal-staging/webhook/dev-key", body: ev("patch"), code: 200, events: 1},
		{name: "webhook GET", method: "GET", path: "/api/signal-staging/webhook/dev-key", code: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := send(t, tc.method, e.url+tc.path, tc.body, tc.hdr)
			if code != tc.code {
				t.Fatalf("got %d %s, want %d", code, body, tc.code)
			}
			if got := h.Get("Access-Control-Allow-Origin"); tc.cors && got != tc.hdr["Origin"] {
				t.Errorf("Access-Control-Allow-Origin %q on a %d, want %q", got, code, tc.hdr["Origin"])
			}
			if tc.cors && !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Errorf("Access-Control-Expose-Headers %q lacks Retry-After", h.Get("Access-Control-Expose-Headers"))
			}
			if code == 200 && !strings.Contains(body, fmt.Sprintf(`"accepted":%d`, tc.events)) {
				t.Errorf("answer %s, want %d accepted", body, tc.events)
			}
		})
		if !t.Failed() {
			accepted += tc.events
		}
	}
	t.Run("preflight", func(t *testing.T) {
		pre := map[string]string{"Origin": origin, "Access-Control-Request-Method": "POST",
			"Access-Control-Request-Headers": "authorization,content-type"}
		for _, p := range []string{"/v1/t", "/v1/b", "/v1/batch", "/v1/identify"} {
			code, h, _ := send(t, http.MethodOptions, e.url+p, nil, pre)
			if code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("%s: %d, Allow-Origin %q", p, code, h.Get("Access-Control-Allow-Origin"))
			}
			allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
			if !strings.Contains(allowed, "authorization") || !strings.Contains(allowed, "content-type") ||
				!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") {
				t.Errorf("%s: Allow-Headers %q, Allow-Methods %q", p, allowed, h.Get("Access-Control-Allow-Methods"))
			}
		}
		pre["Origin"] = "http://evil.example"
		if code, h, _ := send(t, http.MethodOptions, e.url+"/v1/t", nil, pre); code != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from an origin no key allows: %d, Allow-Origin %q", code, h.Get("Access-Control-Allow-Origin"))
		}
	})
	if recs, _ := e.readRaw(t); len(recs) != accepted {
		t.Errorf("signals.raw has %d records, want the %d accepted", len(recs), accepted)
	}
}

func extra2(s string) string {
	if strings.HasPrefix(s, "p") {
		return `,"type":"page","properties":{"url":"https://shop.example/pricing"}`
	}
	return `,"type":"track","event":"E"`
}
