package pprofhttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandlerGuards(t *testing.T) {
	for _, tc := range []struct {
		name, remote, token, auth, path string
		want                            int
	}{
		{"loopback v4", "127.0.0.1:5000", "", "", "/debug/pprof/", http.StatusOK},
		{"loopback v6", "[::1]:5000", "", "", "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{"remote without a token configured", "10.1.2.3:5000", "", "Bearer x", "/debug/pprof/", http.StatusForbidden},
		{"remote without the header", "10.1.2.3:5000", "s3cret-token", "", "/debug/pprof/", http.StatusForbidden},
		{"remote with a wrong token", "10.1.2.3:5000", "s3cret-token", "Bearer s3cret-tokem", "/debug/pprof/", http.StatusForbidden},
		{"remote with the token", "10.1.2.3:5000", "s3cret-token", "Bearer s3cret-token", "/debug/pprof/goroutine?debug=1", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tc.path, nil)
			req.RemoteAddr = tc.remote
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			Handler(tc.token).ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body.String())
			}
			if tc.want == http.StatusOK && !strings.Contains(rec.Body.String(), "goroutine") {
				t.Fatalf("not a profile page: %.200s", rec.Body.String())
			}
		})
	}
}
