package ingest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublicReadyzHidesWhy: with Kafka unreachable, the public /readyz answers 503 "not ready" and nothing of
// Kafka's error (broker addresses, TLS or SASL details are for operators), while the admin listener's /readyz
// says why.
func TestPublicReadyzHidesWhy(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, keys, fmt.Sprintf(testKeys, HashSecret("s3cret")))
	s, err := New(Config{Brokers: []string{"127.0.0.1:1"}, KeysFile: keys, AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.cl.Close()
	s.serving.Store(true) // as Run does once listening; Kafka is what is missing
	get := func(h http.Handler) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	if code, body := get(s.Handler()); code != http.StatusServiceUnavailable || strings.TrimSpace(body) != "not ready" {
		t.Errorf("public /readyz: %d %q, want 503 and only not ready", code, body)
	}
	if code, body := get(s.AdminHandler()); code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka unreachable") {
		t.Errorf("admin /readyz: %d %q, want 503 with the reason", code, body)
	}
}
