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
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/twmb/franz-go/pkg/kgo"
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
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		req.ContentLength = int64(len(body))
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
}

// BenchmarkParseBatch100 is the parse step alone (the scanner), for comparison with encoding/json.
func BenchmarkParseBatch100(b *testing.B) {
	body := batchBody(100)
	var p parsed
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parseBody(body, &p); err != nil {
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
