// Package pprofhttp serves the Go runtime profiles (net/http/pprof) on a stage's admin listener, so that anyone
// can profile ingest, processor or sink under load the way BENCHMARKS.md's figures were taken:
//
//	go tool pprof -seconds 30 http://127.0.0.1:9102/debug/pprof/profile
//
// A profile shows the code and costs CPU while it runs, so Handler answers only a peer on a loopback address, or
// any peer that presents the stage's admin token as "Authorization: Bearer <token>"; everyone else gets 403.
package pprofhttp

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
)

// Prefix is where Handler is mounted: mux.Handle(pprofhttp.Prefix, pprofhttp.Handler(token)).
const Prefix = "/debug/pprof/"

// Handler returns the /debug/pprof/ routes (index, profile, trace, symbol, cmdline and every named profile such
// as heap, goroutine, allocs, block, mutex), guarded as the package says. An empty token admits loopback peers
// only.
func Handler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(Prefix, pprof.Index)
	mux.HandleFunc(Prefix+"cmdline", pprof.Cmdline)
	mux.HandleFunc(Prefix+"profile", pprof.Profile)
	mux.HandleFunc(Prefix+"symbol", pprof.Symbol)
	mux.HandleFunc(Prefix+"trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r, token) {
			http.Error(w, "profiles are served to loopback peers, or with the admin token (Authorization: Bearer)", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func allowed(r *http.Request, token string) bool {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return true
		}
	}
	if token == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
