package rules

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

func TestHTTPAPI(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	w := startWatcher(t, k)
	h, err := NewHandler(HandlerConfig{Token: "s3cret", Rules: w.Set,
		Publisher: NewPublisher(k.Client(), k.Topic(schemas.TopicRules))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path, token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}

	for _, tc := range []struct{ method, path, token string }{
		{"GET", APIPrefix, ""}, {"GET", APIPrefix, "wrong"}, {"PUT", APIPrefix + "/acme/demo", "s3cret2"},
		{"DELETE", APIPrefix + "/acme/demo", "s3cre"},
	} {
		if code, _ := do(tc.method, tc.path, tc.token, ""); code != http.StatusUnauthorized {
			t.Fatalf("%s %s with token %q: %d, want 401", tc.method, tc.path, tc.token, code)
		}
	}

	yamlBody := "match:\n  type: track\n  event: Form Submitted\n  conditions:\n    - {path: properties.form_name, op: eq, value: demo}\nsignal: Demo Requested\nmap: {email: properties.email}\n"
	code, body := do("PUT", APIPrefix+"/acme/demo", "s3cret", yamlBody)
	if code != http.StatusOK || body["signal"] != "Demo Requested" || body["updated_at"] == nil {
		t.Fatalf("PUT: %d %v", code, body)
	}
	// PUT answers once the rule is in effect here: GET sees it right away.
	if code, body = do("GET", APIPrefix+"/acme/demo", "s3cret", ""); code != http.StatusOK || body["id"] != "demo" {
		t.Fatalf("GET: %d %v", code, body)
	}
	if code, body = do("GET", APIPrefix+"/acme", "s3cret", ""); code != http.StatusOK || len(body["rules"].([]any)) != 1 {
		t.Fatalf("GET list: %d %v", code, body)
	}
	if code, body = do("GET", APIPrefix+"?tenant=other", "s3cret", ""); code != http.StatusOK || len(body["rules"].([]any)) != 0 {
		t.Fatalf("GET other tenant: %d %v", code, body)
	}

	for _, tc := range []struct {
		name, path, body string
		code             int
		field            string
	}{
		{"bad regex", "/acme/r", `{"match":{"conditions":[{"path":"a","op":"regex","value":"(("}]}}`, 422, "match.conditions[0].value"},
		{"unknown op", "/acme/r", `{"match":{"conditions":[{"path":"a","op":"like","value":"x"}]}}`, 422, "match.conditions[0].op"},
		{"unknown target", "/acme/r", `{"map":{"phone":"traits.phone"}}`, 422, "map.phone"},
		{"bad path", "/acme/r", `{"map":{"email":".email"}}`, 422, "map.email"},
		{"id mismatch", "/acme/r", `{"id":"other"}`, 400, ""},
		{"unknown field", "/acme/r", `{"matches":{}}`, 400, ""},
	} {
		code, body := do("PUT", APIPrefix+tc.path, "s3cret", tc.body)
		if code != tc.code || (tc.field != "" && body["field"] != tc.field) {
			t.Errorf("%s: %d %v, want %d field %q", tc.name, code, body, tc.code, tc.field)
		}
	}

	if code, body = do("POST", APIPrefix+"/suggest?tenant=acme", "s3cret", demoSample); code != http.StatusOK ||
		body["rule"].(map[string]any)["id"] != "form-submitted" || len(body["paths"].([]any)) == 0 {
		t.Fatalf("suggest: %d %v", code, body)
	}

	if code, _ = do("DELETE", APIPrefix+"/acme/demo", "s3cret", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ = do("GET", APIPrefix+"/acme/demo", "s3cret", ""); code != http.StatusNotFound {
		t.Fatalf("GET after DELETE: %d", code)
	}
	if _, ok := w.Set().Rule("acme", "demo"); ok {
		t.Fatal("watcher still has the deleted rule")
	}
}

func TestHTTPRuleLimit(t *testing.T) {
	s, err := NewSet([]Rule{validRule()})
	if err != nil {
		t.Fatal(err)
	}
	// The limit is checked before anything is produced: the publisher has no client and must not be used.
	h, err := NewHandler(HandlerConfig{Token: "x", Rules: func() *Set { return s }, Publisher: &Publisher{}, MaxRulesPerTenant: 1})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("PUT", APIPrefix+"/acme/another", strings.NewReader(`{"match":{"event":"x"}}`))
	req.Header.Set("Authorization", "Bearer x")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "already has 1 rules") {
		t.Fatalf("PUT over the limit: %d %s", rec.Code, rec.Body)
	}
}

func TestNewHandlerNeedsToken(t *testing.T) {
	if _, err := NewHandler(HandlerConfig{Rules: func() *Set { return nil }, Publisher: &Publisher{}}); err == nil {
		t.Fatal("empty token accepted")
	}
}
