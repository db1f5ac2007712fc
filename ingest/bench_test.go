package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	gojson "github.com/goccy/go-json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas/contract"
	"github.com/signalstage/signalstage/testenv"
)

// instantAck acknowledges every record at once, so a benchmark measures the handler's own CPU.
type instantAck struct{}

func (instantAck) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	promise(r, nil)
}

// discardWriter is a ResponseWriter that keeps nothing, unlike httptest.ResponseRecorder which allocates.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func benchServer(b *testing.B) *Server {
	b.Helper()
	keys := filepath.Join(b.TempDir(), "keys.json")
	if err := os.WriteFile(keys, []byte(`{"keys":{"dev-key":{"id":"dev","tenant":"dev","endpoint_type":"signal-staging"}}}`), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{KeysFile: keys})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.cl.Close)
	s.prod = instantAck{}
	return s
}

// batchBody is n Segment track events of about 400 bytes each, as a JSON array.
func batchBody(n int) []byte {
	body := []byte{'['}
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, trackEvent(fmt.Sprintf("anon-%08d", i), i)...)
	}
	return append(body, ']')
}

// BenchmarkHandlerBatch100 is the handler path (route, auth, read, parse, validate, encode, enqueue, answer)
// for a batch of 100 track events of about 400 bytes, with Kafka replaced by an immediate ack.
// Reports ns/event; allocs/op are per request of 100 events.
func BenchmarkHandlerBatch100(b *testing.B) {
	s := benchServer(b)
	body := batchBody(100)
	b.Logf("event size %d bytes, body %d bytes", len(trackEvent("anon-00000000", 1)), len(body))
	h := s.Handler()
	rd := bytes.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "/api/signal-staging/webhook/dev-key", io.NopCloser(rd))
	serveLoop(b, h, req, rd, body, 100)
}

// BenchmarkParseBatch100 is the split step alone (the contract's scanner), for comparison with encoding/json.
func BenchmarkParseBatch100(b *testing.B) {
	body := batchBody(100)
	var p contract.Body
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := contract.SplitBody(body, &p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
}

// eventHeader is what the edge needs of an event, for the decoder comparison benchmarks.
type eventHeader struct {
	Type        string          `json:"type"`
	AnonymousID string          `json:"anonymousId"`
	UserID      string          `json:"userId"`
	MessageID   string          `json:"messageId"`
	Context     json.RawMessage `json:"context"`
}

// BenchmarkParseStdlibBatch100 does the parse step with encoding/json (split, then read the header of each
// event): what the scanner replaces.
func BenchmarkParseStdlibBatch100(b *testing.B) {
	benchDecoder(b, json.Unmarshal)
}

// BenchmarkParseGoccyBatch100 is the same with goccy/go-json.
func BenchmarkParseGoccyBatch100(b *testing.B) {
	benchDecoder(b, gojson.Unmarshal)
}

func benchDecoder(b *testing.B, unmarshal func([]byte, any) error) {
	body := batchBody(100)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var raws []json.RawMessage
		if err := unmarshal(body, &raws); err != nil {
			b.Fatal(err)
		}
		for _, r := range raws {
			var h eventHeader
			if err := unmarshal(r, &h); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
}

// BenchmarkHandlerBatch100Kafka runs the same requests through the real producer to the real broker, from
// parallel goroutines, and reports the edge process's CPU time per event (user+system, from getrusage): the
// handler plus the Kafka client's encoding, compression and network work, without the broker's share when the
// broker is another process.
func BenchmarkHandlerBatch100Kafka(b *testing.B) {
	k := testenv.NewKafka(b, 6)
	keys := filepath.Join(b.TempDir(), "keys.json")
	if err := os.WriteFile(keys, []byte(`{"keys":{"dev-key":{"id":"dev","tenant":"dev","endpoint_type":"signal-staging"}}}`), 0o600); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{KeysFile: keys, Brokers: k.Brokers, TopicPrefix: k.Prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.cl.Close)
	body := batchBody(100)
	h := s.Handler()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	// Warm up: fresh topics need metadata and partition leaders before the numbers mean anything.
	for range 20 {
		w := &discardWriter{h: http.Header{}}
		req, _ := http.NewRequest(http.MethodPost, "/api/signal-staging/webhook/dev-key", bytes.NewReader(body))
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("warm-up status %d", w.code)
		}
	}
	b.SetParallelism(8) // requests in flight per core, as concurrent Segment connections would be
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(body)
		req, _ := http.NewRequest(http.MethodPost, "/api/signal-staging/webhook/dev-key", io.NopCloser(rd))
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			rd.Reset(body)
			req.ContentLength = int64(len(body))
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				b.Errorf("status %d", w.code)
				return
			}
		}
	})
	events := float64(b.N * 100)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/events, "cpu-ns/event")
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
}

// cpuTime is the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHandlerSingle is the handler path for one event per request (Kafka replaced by an immediate ack):
// the fixed per-request cost that single-event keep-alive traffic pays.
func BenchmarkHandlerSingle(b *testing.B) {
	s := benchServer(b)
	body := trackEvent("anon-00000001", 1)
	h := s.Handler()
	rd := bytes.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "/api/signal-staging/webhook/dev-key", io.NopCloser(rd))
	serveLoop(b, h, req, rd, body, 0)
}

// BenchmarkHandlerV1Batch100 is /v1/batch with a top-level context merged into each of 100 events, half of
// which have a context of their own (the merge path), with Kafka replaced by an immediate ack.
func BenchmarkHandlerV1Batch100(b *testing.B) {
	s := benchServer(b)
	body := []byte(`{"batch":[`)
	for i := range 100 {
		if i > 0 {
			body = append(body, ',')
		}
		if i%2 == 0 {
			body = append(body, trackEvent(fmt.Sprintf("anon-%08d", i), i)...)
		} else {
			body = fmt.Appendf(body, `{"type":"track","event":"Signed Up","anonymousId":"anon-%08d","messageId":"m-%d",`+
				`"properties":{"plan":"pro","source":"landing","value":%d},"timestamp":"2026-11-30T05:00:00.000Z"}`, i, i, i)
		}
	}
	body = append(body, `],"context":{"library":{"name":"analytics-go","version":"3.3.0"},"app":{"name":"shop"}},`+
		`"messageId":"batch-1","sentAt":"2026-11-30T05:00:00.100Z"}`...)
	h := s.Handler()
	rd := bytes.NewReader(body)
	req, _ := http.NewRequest(http.MethodPost, "/v1/batch", io.NopCloser(rd))
	req.SetBasicAuth("dev-key", "")
	serveLoop(b, h, req, rd, body, 100)
}

// serveLoop serves req through h once per benchmark iteration, rewinding its body (read from rd) each time, and
// fails on any answer but 200. With events > 0 it reports CPU and wall time per event: CPU time (this process,
// GC included) is less disturbed than wall time on a machine shared with others.
func serveLoop(b *testing.B, h http.Handler, req *http.Request, rd *bytes.Reader, body []byte, events int) {
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		rd.Reset(body)
		req.ContentLength = int64(len(body))
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	if events > 0 {
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*events), "cpu-ns/event")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
	}
}
