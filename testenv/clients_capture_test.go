package testenv

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// What Segment's own clients really send, captured from the real libraries (installed by `make clients`)
// against the capture server. These tests pin the facts the team notes (segment-facts.md) and the issue-14 ingest work
// rely on: a library upgrade that changes them fails here first. With SIGNALSTAGE_WRITE_FIXTURES=1 they also
// rewrite testdata/clients/ (see its README); without it they check that the fixtures still have the shape
// the libraries send today.

const (
	capWriteKey = "wk_capture_test"
	capAnon     = "anon-5f1c"
	capUser     = "user-42"
)

var scriptTypes = []string{"page", "track", "identify", "track", "screen", "group", "alias"}

func basicWithColon(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

func runCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func eventTypes(evs []map[string]any) []string {
	var ts []string
	for _, e := range evs {
		ts = append(ts, e["type"].(string))
	}
	return ts
}

// checkEvents asserts what every client puts in each event of the scripted session.
func checkEvents(t *testing.T, evs []map[string]any, library, version string) {
	t.Helper()
	if got := eventTypes(evs); !slices.Equal(got, scriptTypes) {
		t.Fatalf("event types %v, want %v", got, scriptTypes)
	}
	ids := map[string]bool{}
	for i, e := range evs {
		id, _ := e["messageId"].(string)
		if id == "" || ids[id] {
			t.Errorf("event %d (%s): messageId %q missing or repeated", i, e["type"], id)
		}
		ids[id] = true
		if ts, _ := e["timestamp"].(string); ts == "" {
			t.Errorf("event %d (%s): no timestamp", i, e["type"])
		} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("event %d (%s): timestamp %q is not RFC 3339: %v", i, e["type"], ts, err)
		}
		if library == "" {
			continue
		}
		ctx, _ := e["context"].(map[string]any)
		lib, _ := ctx["library"].(map[string]any)
		if lib["name"] != library || lib["version"] != version {
			t.Errorf("event %d (%s): context.library = %v, want %s %s", i, e["type"], lib, library, version)
		}
	}
	if email := evs[2]["traits"].(map[string]any)["email"]; email != "Ada.Lovelace@Example.com" {
		t.Errorf("identify traits.email = %v", email)
	}
	if evs[6]["previousId"] != capAnon || evs[6]["userId"] != capUser {
		t.Errorf("alias previousId/userId = %v/%v", evs[6]["previousId"], evs[6]["userId"])
	}
}

// checkServerBatch asserts the one-request shape of the server-side libraries: POST /v1/batch, JSON, Basic auth.
func checkServerBatch(t *testing.T, s *CaptureServer, userAgent string, envelope []string) (CapturedRequest, map[string]any) {
	t.Helper()
	sends := s.Sends()
	if len(sends) != 1 {
		t.Fatalf("%d requests, want the 7 calls in one batch", len(sends))
	}
	r := sends[0]
	if r.Method != http.MethodPost || r.Path != "/v1/batch" {
		t.Errorf("request %s %s, want POST /v1/batch", r.Method, r.Path)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if got := r.Header.Get("Authorization"); got != basicWithColon(capWriteKey) {
		t.Errorf("Authorization %q, want Basic base64(writeKey + \":\")", got)
	}
	if got := r.Header.Get("User-Agent"); got != userAgent {
		t.Errorf("User-Agent %q, want %q", got, userAgent)
	}
	body := r.JSON(t)
	if got := keys(body); !slices.Equal(got, envelope) {
		t.Errorf("batch envelope members %v, want %v", got, envelope)
	}
	return r, body
}

func TestCaptureAnalyticsNode(t *testing.T) {
	t.Parallel()
	s := NewCaptureServer(t)
	res, err := RunNodeClient(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: ScriptCalls(capAnon, capUser)})
	if err != nil || res.Sent != 7 {
		t.Fatalf("analytics-node: sent %d, %v\n%s", res.Sent, err, res.Output)
	}
	r, body := checkServerBatch(t, s, "analytics-node-next/latest", []string{"batch", "sentAt", "writeKey"})
	if r.Gzip || body["writeKey"] != capWriteKey {
		t.Errorf("gzip %v, body writeKey %v", r.Gzip, body["writeKey"])
	}
	evs := s.Events(t)
	checkEvents(t, evs, "@segment/analytics-node", "3.1.0")
	for i, e := range evs {
		if _, ok := e["userId"]; ok && i < 2 {
			t.Errorf("anonymous %s carries userId %v: analytics-node omits it", e["type"], e["userId"])
		}
		if _, ok := e["sentAt"]; ok {
			t.Errorf("%s carries its own sentAt; analytics-node puts sentAt on the batch only", e["type"])
		}
		if md, _ := e["_metadata"].(map[string]any); md["jsRuntime"] != "node" {
			t.Errorf("%s _metadata = %v", e["type"], e["_metadata"])
		}
	}
	saveFixtures(t, "analytics-node", s, res)
}

func TestCaptureAnalyticsPython(t *testing.T) {
	t.Parallel()
	for _, gz := range []bool{false, true} {
		name := map[bool]string{false: "analytics-python", true: "analytics-python-gzip"}[gz]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := NewCaptureServer(t)
			res, err := RunPythonClient(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: ScriptCalls(capAnon, capUser), Gzip: gz})
			if err != nil || res.Sent != 7 {
				t.Fatalf("analytics-python: sent %d, %v\n%s", res.Sent, err, res.Output)
			}
			r, _ := checkServerBatch(t, s, "analytics-python/2.4.0", []string{"batch", "sentAt", "writeKey"})
			if r.Gzip != gz || (r.Header.Get("Content-Encoding") == "gzip") != gz {
				t.Errorf("gzip %v (Content-Encoding %q), want %v", r.Gzip, r.Header.Get("Content-Encoding"), gz)
			}
			evs := s.Events(t)
			checkEvents(t, evs, "analytics-python", "2.4.0")
			for _, i := range []int{0, 1} {
				if v, ok := evs[i]["userId"]; !ok || v != nil {
					t.Errorf("anonymous %s: userId present=%v value=%v, want an explicit null", evs[i]["type"], ok, v)
				}
			}
			if v, ok := evs[6]["anonymousId"]; !ok || v != nil {
				t.Errorf("alias: anonymousId present=%v value=%v, want an explicit null", ok, v)
			}
			saveFixtures(t, name, s, res)
		})
	}
}

func TestCaptureAnalyticsGo(t *testing.T) {
	t.Parallel()
	s := NewCaptureServer(t)
	res, err := RunGoClient(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: ScriptCalls(capAnon, capUser)}, 0)
	if err != nil || res.Sent != 7 {
		t.Fatalf("analytics-go: sent %d, %v", res.Sent, err)
	}
	// analytics-go is the one library that puts messageId and context on the batch and no writeKey in the body;
	// its events carry no context.library of their own, and v3.3.0 still calls itself 3.0.0 (its Version
	// constant was never bumped).
	_, body := checkServerBatch(t, s, "analytics-go (version: 3.0.0)", []string{"batch", "context", "messageId", "sentAt"})
	if lib, _ := body["context"].(map[string]any)["library"].(map[string]any); lib["name"] != "analytics-go" || lib["version"] != "3.0.0" {
		t.Errorf("batch context.library = %v", lib)
	}
	evs := s.Events(t)
	checkEvents(t, evs, "", "")
	for _, e := range evs {
		if _, ok := e["context"]; ok {
			t.Errorf("%s: analytics-go event has a context %v of its own", e["type"], e["context"])
		}
	}
	saveFixtures(t, "analytics-go", s, res)
}

// TestCaptureAnalyticsJS runs analytics.js in headless Chromium on one origin sending to the capture server on
// another: one request per call on the short routes, or /v1/b with the batching strategy.
func TestCaptureAnalyticsJS(t *testing.T) {
	t.Parallel()
	for _, batching := range []bool{false, true} {
		name := map[bool]string{false: "analytics.js", true: "analytics.js-batching"}[batching]
		t.Run(name, func(t *testing.T) {
			s := NewCaptureServer(t)
			res, err := RunBrowserClient(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: ScriptCalls(capAnon, capUser)}, batching)
			if err != nil || res.Sent != 7 {
				t.Fatalf("analytics.js: sent %d, %v\nattempts %+v\nrequested %v", res.Sent, err, res.Attempts, res.Requested)
			}
			for _, u := range res.Requested {
				if !strings.Contains(u, " "+res.PageOrigin+"/") && !strings.Contains(u, " "+s.URL+"/") {
					t.Errorf("the page requested %s: neither the page's origin nor the target (the run must be offline)", u)
				}
			}
			checkBrowserRequests(t, s, res, batching)
			evs := s.Events(t)
			checkEvents(t, evs, "analytics.js", "next-1.84.3")
			for _, i := range []int{0, 1} {
				if v, ok := evs[i]["userId"]; !ok || v != nil {
					t.Errorf("%s before identify: userId present=%v value=%v, want an explicit null", evs[i]["type"], ok, v)
				}
			}
			for _, e := range evs {
				if e["writeKey"] != capWriteKey {
					t.Errorf("%s: event writeKey %v; analytics.js puts the write key in every event", e["type"], e["writeKey"])
				}
				_, hasSentAt := e["sentAt"]
				if hasSentAt == batching {
					t.Errorf("%s: per-event sentAt present=%v; analytics.js sets it per event, except in a batch", e["type"], hasSentAt)
				}
			}
			saveFixtures(t, name, s, res.ClientResult)
		})
	}
}

func checkBrowserRequests(t *testing.T, s *CaptureServer, res BrowserResult, batching bool) {
	t.Helper()
	var paths []string
	preflighted := map[string]bool{}
	for _, r := range s.Requests() {
		if r.Header.Get("Origin") != res.PageOrigin {
			t.Errorf("%s %s: Origin %q, want the page's %q", r.Method, r.Path, r.Header.Get("Origin"), res.PageOrigin)
		}
		if r.Preflight() {
			// text/plain is a CORS-safelisted content type; the Authorization header is what makes it preflight.
			if r.Header.Get("Access-Control-Request-Method") != "POST" || r.Header.Get("Access-Control-Request-Headers") != "authorization" {
				t.Errorf("preflight %s: method %q headers %q", r.Path, r.Header.Get("Access-Control-Request-Method"), r.Header.Get("Access-Control-Request-Headers"))
			}
			preflighted[r.Path] = true
			continue
		}
		paths = append(paths, r.Path)
		if got := r.Header.Get("Content-Type"); got != "text/plain" {
			t.Errorf("%s: Content-Type %q, want text/plain", r.Path, got)
		}
		if got := r.Header.Get("Authorization"); got != basicWithColon(capWriteKey) {
			t.Errorf("%s: Authorization %q", r.Path, got)
		}
		body := r.JSON(t)
		if batching {
			if got := keys(body); !slices.Equal(got, []string{"batch", "sentAt", "writeKey"}) {
				t.Errorf("batch envelope members %v", got)
			}
		}
	}
	want := []string{"/v1/p", "/v1/t", "/v1/i", "/v1/t", "/v1/s", "/v1/g", "/v1/a"}
	if batching {
		want = []string{"/v1/b"}
	}
	if !slices.Equal(paths, want) {
		t.Errorf("paths %v, want %v", paths, want)
	}
	for _, p := range want {
		if !preflighted[p] {
			t.Errorf("no CORS preflight before the first POST %s", p)
		}
	}
}
