package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Fixtures under testdata/clients/<client>/: what each real client sent for the scripted session
// (ScriptCalls), anonymised: the capture server's address becomes ingest.example, any other loopback address
// (the page's origin) shop.example. SIGNALSTAGE_WRITE_FIXTURES=1 rewrites them; otherwise the capture tests
// check that every fixture still has the shape (requests, and the JSON paths and types of each body) that the
// library sends today, so the corpus never silently drifts from the libraries it claims to show.

const envWriteFixtures = "SIGNALSTAGE_WRITE_FIXTURES"

// fixtureHeaders are the request headers a fixture keeps: those that matter to a Tracking API server.
var fixtureHeaders = []string{"Content-Type", "Content-Encoding", "Authorization", "User-Agent", "Origin",
	"X-Retry-Count", "Access-Control-Request-Method", "Access-Control-Request-Headers"}

type fixtureRequest struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	// Gzip says the body arrived gzip-encoded; Body names the file holding it decoded, bytes as sent.
	Gzip bool   `json:"gzip"`
	Body string `json:"body,omitempty"`
}

type fixtureIndex struct {
	Client   string           `json:"client"`
	Requests []fixtureRequest `json:"requests"`
	Events   []string         `json:"events"`
}

var loopback = regexp.MustCompile(`127\.0\.0\.1:[0-9]+`)

func anonymise(b []byte, target string) []byte {
	b = bytes.ReplaceAll(b, []byte(target), []byte("ingest.example"))
	return loopback.ReplaceAll(b, []byte("shop.example"))
}

func saveFixtures(t *testing.T, client string, s *CaptureServer, _ ClientResult) {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	idx := fixtureIndex{Client: client}
	files := map[string][]byte{}
	n := 0
	for _, r := range s.Requests() {
		n++
		fr := fixtureRequest{Method: r.Method, Path: r.Path, Gzip: r.Gzip, Headers: map[string]string{}}
		for _, h := range fixtureHeaders {
			if v := r.Header.Get(h); v != "" {
				fr.Headers[h] = string(anonymise([]byte(v), u.Host))
			}
		}
		if len(r.Decoded) > 0 {
			fr.Body = fmt.Sprintf("%02d-%s%s.json", n, strings.ToLower(r.Method), strings.ReplaceAll(r.Path, "/", "-"))
			files[fr.Body] = anonymise(r.Decoded, u.Host)
		}
		idx.Requests = append(idx.Requests, fr)
	}
	for i, e := range s.Events(t) {
		name := fmt.Sprintf("events/%02d-%s.json", i+1, e["type"])
		b, err := json.MarshalIndent(e, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		files[name] = append(anonymise(b, u.Host), '\n')
		idx.Events = append(idx.Events, name)
	}
	ib, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files["requests.json"] = append(ib, '\n')
	dir := filepath.Join("testdata", "clients", client)
	if os.Getenv(envWriteFixtures) != "" {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		for name, b := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	checkFixtures(t, dir, files)
}

// checkFixtures compares the fixtures on disk with what was just captured, by shape.
func checkFixtures(t *testing.T, dir string, captured map[string][]byte) {
	t.Helper()
	refresh := "; refresh the fixtures with " + envWriteFixtures + "=1 go test -run TestCapture ./testenv/ and review the diff"
	var old fixtureIndex
	ob, err := os.ReadFile(filepath.Join(dir, "requests.json"))
	if err == nil {
		err = json.Unmarshal(ob, &old)
	}
	if err != nil {
		t.Fatalf("fixture index: %v%s", err, refresh)
	}
	var now fixtureIndex
	if err := json.Unmarshal(captured["requests.json"], &now); err != nil {
		t.Fatal(err)
	}
	if len(old.Requests) != len(now.Requests) || len(old.Events) != len(now.Events) {
		t.Fatalf("%s: %d requests and %d events on disk, %d and %d sent now%s", dir, len(old.Requests), len(old.Events),
			len(now.Requests), len(now.Events), refresh)
	}
	for i, o := range old.Requests {
		c := now.Requests[i]
		if o.Method != c.Method || o.Path != c.Path || o.Gzip != c.Gzip || !slices.Equal(keys(anyMap(o.Headers)), keys(anyMap(c.Headers))) {
			t.Errorf("%s request %d: %s %s gzip=%v headers %v on disk, %s %s gzip=%v headers %v now%s", dir, i+1,
				o.Method, o.Path, o.Gzip, keys(anyMap(o.Headers)), c.Method, c.Path, c.Gzip, keys(anyMap(c.Headers)), refresh)
		}
		if o.Body != "" || c.Body != "" {
			compareShape(t, filepath.Join(dir, o.Body), captured[c.Body], refresh)
		}
	}
	for i, name := range old.Events {
		compareShape(t, filepath.Join(dir, name), captured[now.Events[i]], refresh)
	}
}

func anyMap(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func compareShape(t *testing.T, path string, now []byte, refresh string) {
	t.Helper()
	old, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("fixture %s: %v%s", path, err, refresh)
		return
	}
	a, b := shapeOf(t, old), shapeOf(t, now)
	if !slices.Equal(a, b) {
		t.Errorf("fixture %s: shape differs\n on disk: %v\n now:     %v%s", path, a, b, refresh)
	}
}

// shapeOf lists the JSON paths of a document with their types (arrays as [] with their members' shapes merged).
func shapeOf(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("fixture is not JSON: %v", err)
	}
	set := map[string]bool{}
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			set[p+":object"] = true
			for k, c := range x {
				walk(p+"."+k, c)
			}
		case []any:
			set[p+":array"] = true
			for _, c := range x {
				walk(p+"[]", c)
			}
		case nil:
			set[p+":null"] = true
		default:
			set[fmt.Sprintf("%s:%T", p, x)] = true
		}
	}
	walk("", v)
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
