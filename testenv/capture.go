package testenv

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// CapturedRequest is one request the capture server received, exactly as the client sent it.
type CapturedRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	// Body is the body as it arrived on the wire; Decoded is the same after a `Content-Encoding: gzip` is undone
	// (equal to Body otherwise). Gzip says whether the body was gzip-encoded.
	Body    []byte
	Decoded []byte
	Gzip    bool
	At      time.Time
	// Status is the status the capture server answered with.
	Status int
}

// Preflight reports whether the request is a CORS preflight (OPTIONS with Access-Control-Request-Method).
func (r CapturedRequest) Preflight() bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// JSON decodes the (decoded) body into a generic map; it fails the test when the body is not a JSON object.
func (r CapturedRequest) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Decoded, &m); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %v\n%s", r.Method, r.Path, err, r.Decoded)
	}
	return m
}

// Answer is what the capture server replies. A zero Status means 200.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// SegmentOK is what Segment's Tracking API answers an accepted request: 200 {"success":true}.
var SegmentOK = Answer{Status: http.StatusOK, Body: `{"success":true}`,
	Header: http.Header{"Content-Type": {"application/json"}}}

// AnswerFunc decides the answer to the n-th (from 0) request that is not a CORS preflight.
type AnswerFunc func(r CapturedRequest, n int) Answer

// AlwaysAnswer answers every request with a.
func AlwaysAnswer(a Answer) AnswerFunc { return func(CapturedRequest, int) Answer { return a } }

// CaptureServer is an HTTP server on loopback that records every request and answers like Segment's Tracking
// API (SegmentOK unless told otherwise). It answers CORS preflights permissively (any origin, method and
// requested header) and adds Access-Control-Allow-Origin to every answer to a request with an Origin, so a
// browser on another origin can send to it. Safe for concurrent use.
type CaptureServer struct {
	// URL is the base URL, http://127.0.0.1:PORT, without a trailing slash.
	URL string

	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []CapturedRequest
	posts   int
	answer  AnswerFunc
	expose  string
	changed chan struct{} // closed and replaced on every request, so waiters wake
}

// MaxCaptureBody bounds a captured body (a Webhooks batch of 4000 events is about 4 MB).
const MaxCaptureBody = 64 << 20

// NewCaptureServer starts a capture server; it is closed when the test ends.
func NewCaptureServer(t testing.TB) *CaptureServer {
	s := &CaptureServer{answer: AlwaysAnswer(SegmentOK), changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

// SetAnswer replaces how the server answers requests from now on; n keeps counting from the first request.
func (s *CaptureServer) SetAnswer(f AnswerFunc) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

func (s *CaptureServer) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxCaptureBody+1))
	if err != nil || len(body) > MaxCaptureBody {
		http.Error(w, "capture: body unreadable or over MaxCaptureBody", http.StatusRequestEntityTooLarge)
		return
	}
	c := CapturedRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(),
		Body: body, Decoded: body, At: time.Now()}
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		c.Gzip = true
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
			if d, err := io.ReadAll(zr); err == nil {
				c.Decoded = d
			}
		}
	}
	var a Answer
	s.mu.Lock()
	if origin := r.Header.Get("Origin"); origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		if s.expose != "" && !c.Preflight() {
			h.Set("Access-Control-Expose-Headers", s.expose)
		}
	}
	if c.Preflight() {
		a = Answer{Status: http.StatusNoContent, Header: http.Header{
			"Access-Control-Allow-Methods": {"POST, PUT, PATCH, OPTIONS"},
			"Access-Control-Allow-Headers": {r.Header.Get("Access-Control-Request-Headers")},
			"Access-Control-Max-Age":       {"600"},
		}}
	} else {
		a = s.answer(c, s.posts)
		s.posts++
	}
	if a.Status == 0 {
		a.Status = http.StatusOK
	}
	c.Status = a.Status
	s.reqs = append(s.reqs, c)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	for k, vs := range a.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(a.Status)
	_, _ = io.WriteString(w, a.Body)
}

// SetExposeHeaders sets Access-Control-Expose-Headers on answers to cross-origin requests (none by default):
// without it a page's script cannot read a response header such as Retry-After.
func (s *CaptureServer) SetExposeHeaders(h string) {
	s.mu.Lock()
	s.expose = h
	s.mu.Unlock()
}

// Requests returns every request received so far, preflights included, in arrival order.
func (s *CaptureServer) Requests() []CapturedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CapturedRequest(nil), s.reqs...)
}

// Sends returns the requests that are not CORS preflights, in arrival order.
func (s *CaptureServer) Sends() []CapturedRequest {
	var out []CapturedRequest
	for _, r := range s.Requests() {
		if !r.Preflight() {
			out = append(out, r)
		}
	}
	return out
}

// WaitSends waits until at least n non-preflight requests have arrived, or ctx ends.
func (s *CaptureServer) WaitSends(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, ch := s.posts, s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d requests at the capture server, got %d: %w", n, got, ctx.Err())
		}
	}
}

// Events returns every Segment event in the captured sends, in arrival order: the members of a `batch` array,
// the elements of a top-level JSON array, or the body itself when it is one event. Each is decoded generically.
func (s *CaptureServer) Events(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range s.Sends() {
		out = append(out, EventsOf(t, r.Decoded)...)
	}
	return out
}

// EventsOf splits one request body into its events (see CaptureServer.Events).
func EventsOf(t testing.TB, body []byte) []map[string]any {
	t.Helper()
	var arr []map[string]any
	if len(body) > 0 && body[0] == '[' {
		if err := json.Unmarshal(body, &arr); err != nil {
			t.Fatalf("body is not a JSON array of objects: %v", err)
		}
		return arr
	}
	var one map[string]any
	if err := json.Unmarshal(body, &one); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%.300s", err, body)
	}
	if b, ok := one["batch"].([]any); ok {
		for _, e := range b {
			m, ok := e.(map[string]any)
			if !ok {
				t.Fatalf("batch member is %T, not an object", e)
			}
			out := m
			arr = append(arr, out)
		}
		return arr
	}
	return []map[string]any{one}
}
