package ingest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestHealthAndMetrics checks /healthz, /readyz and that /metrics counts requests and events.
func TestHealthAndMetrics(t *testing.T) {
	e := startEdge(t, nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	post(t, e.webhook("dev-key"), trackEvent("m1", 1), nil)
	post(t, e.webhook("dev-key"), []byte("["+string(trackEvent("m2", 2))+`,{"type":"nope","userId":"u"}]`), nil)
	post(t, e.webhook("nope"), trackEvent("m3", 3), nil)
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`signalstage_ingest_requests_total{code="200",route="webhook"} 2`,
		`signalstage_ingest_requests_total{code="401",route="webhook"} 1`,
		`signalstage_ingest_events_total{outcome="accepted",source="segment",tenant="dev",type="track"} 2`,
		`signalstage_ingest_events_total{outcome="rejected",source="segment",tenant="dev",type="invalid"} 1`,
		`signalstage_ingest_produce_seconds_count 2`,
		`signalstage_ingest_request_bytes_count{route="webhook"} 2`,
		`signalstage_ingest_producer_buffered_records 0`,
		`signalstage_ingest_in_flight_requests 0`, // /metrics itself is not an event route
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestGracefulShutdown stops the edge while a request waits for Kafka: the request still gets its 200, its
// event is in signals.raw, and the listener is closed afterwards.
func TestGracefulShutdown(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.Linger = 2 * time.Second })
	type answer struct {
		code int
		r    response
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Post(e.webhook("dev-key"), "application/json", bytes.NewReader(trackEvent("drain", 1)))
		if err != nil {
			got <- answer{code: -1, r: response{Error: err.Error()}}
			return
		}
		defer resp.Body.Close()
		var r response
		_ = json.NewDecoder(resp.Body).Decode(&r)
		got <- answer{resp.StatusCode, r}
	}()
	waitUntil(t, "the request is in flight", func() bool { return e.srv.inFlight.Load() == 1 })
	if err := e.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	a := <-got
	if a.code != 200 || a.r.Accepted != 1 {
		t.Fatalf("in-flight request got %d %+v, want 200", a.code, a.r)
	}
	if recs, _ := e.readRaw(t); len(recs) != 1 {
		t.Fatalf("signals.raw has %d records, want 1", len(recs))
	}
	if _, err := http.Get(e.url + "/healthz"); err == nil {
		t.Error("listener still open after shutdown")
	}
}

// TestAdminServesProfiles: the admin routes include /debug/pprof/ for loopback peers, and the public listener
// does not serve it.
func TestAdminServesProfiles(t *testing.T) {
	e := startEdge(t, nil)
	req := httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("admin /debug/pprof/cmdline from loopback: %d, want 200", rec.Code)
	}
	req.RemoteAddr = "192.0.2.7:40000"
	rec = httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("admin /debug/pprof/cmdline from another host: %d, want 403", rec.Code)
	}
	resp, err := http.Get(e.url + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("the public listener serves /debug/pprof/")
	}
}
