package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas/contract"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden_records.txt from the current code")

// capture acknowledges every record at once and keeps a copy of it, in the order produced.
type capture struct {
	mu   sync.Mutex
	recs []kgo.Record
}

func (c *capture) TryProduce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	c.mu.Lock()
	c.recs = append(c.recs, kgo.Record{Topic: r.Topic, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
	c.mu.Unlock()
	promise(r, nil)
}

// TestGoldenRecords sends a corpus of Segment-shaped requests (the contract's corpus, and events generated from a
// fixed seed with escapes, non-ASCII text and names, numbers of every form, nesting, unordered members,
// whitespace, invalid events; as single events, arrays, /v1 calls and /v1 batches with an envelope merged in)
// through the handler and compares every answer, every record (topic, key, SHA-256 of the value: the encoded
// RawEvent or DeadLetter, which carry the signal id, the canonical properties and traits and every derived
// field) and the RFC 8785 form of every event (contract.Canonical) with testdata/golden_records.txt, written by
// the code before the CPU work of issue 15. Any changed output byte fails it; -update-golden rewrites it.
func TestGoldenRecords(t *testing.T) {
	got := goldenRun(t)
	path := filepath.Join("testdata", "golden_records.txt")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	diffs := 0
	for i := range max(len(gl), len(wl)) {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Errorf("line %d:\n got  %s\n want %s", i+1, g, w)
			if diffs++; diffs == 10 {
				break
			}
		}
	}
	if diffs == 0 {
		t.Errorf("output differs from %s", path)
	}
}

func goldenRun(t *testing.T) []byte {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, keys, `{"keys":{"dev-key":{"id":"dev","tenant":"dev","endpoint_type":"signal-staging"}}}`)
	now := time.Date(2026, 11, 30, 5, 0, 1, 234_000_000, time.UTC)
	s, err := New(Config{KeysFile: keys, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cl.Close)
	c := &capture{}
	s.prod = c
	h := s.Handler()

	var out bytes.Buffer
	n := 0
	send := func(method, path string, body []byte, basic bool) {
		n++
		req, _ := http.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d", n))
		if basic {
			req.SetBasicAuth("dev-key", "")
		}
		w := &bodyWriter{h: http.Header{}}
		c.recs = c.recs[:0]
		h.ServeHTTP(w, req)
		fmt.Fprintf(&out, "request %d %s %s: %d %s\n", n, method, path, w.code, bytes.TrimSpace(w.body.Bytes()))
		for _, r := range c.recs {
			sum := sha256.Sum256(r.Value)
			fmt.Fprintf(&out, "  %s %q %s\n", r.Topic, r.Key, hex.EncodeToString(sum[:]))
		}
	}
	const webhook = "/api/signal-staging/webhook/dev-key"

	corpusFiles, _ := filepath.Glob("../schemas/contract/testdata/corpus/*.json")
	if len(corpusFiles) == 0 {
		t.Fatal("no contract corpus")
	}
	var events [][]byte
	for _, f := range corpusFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, b)
	}
	events = append(events, generateEvents(400)...)

	// The canonical form of every event, as the contract writes it.
	for i, ev := range events {
		cf, err := contract.Canonical(nil, ev)
		sum := sha256.Sum256(cf)
		fmt.Fprintf(&out, "canonical %d: %x %v\n", i, sum, err)
	}
	for _, ev := range events {
		send(http.MethodPost, webhook, ev, false)
	}
	for i := 0; i < len(events); i += 50 {
		send(http.MethodPost, webhook, arrayOf(events[i:min(i+50, len(events))], i%2 == 0), false)
	}
	envelopes := []string{
		``,
		`"context":{"library":{"name":"analytics-go","version":"3.3.0"},"app":{"name":"shop"},"ip":"198.51.100.7"},"sentAt":"2026-11-30T05:00:00.500Z","messageId":"batch-1"`,
		`"sentAt":"2026-11-30T04:59:59Z","integrations":{"All":true,"Mixpanel":false},"writeKey":"dev-key"`,
		`"context":{"traits":{"email":"Batch@Example.COM"},"page":{"url":"https://example.com/b?x=1","path":"/b"},"userAgent":"ua \u00e9"}`,
	}
	for i := 0; i < len(events); i += 40 {
		env := envelopes[(i/40)%len(envelopes)]
		body := append([]byte(`{"batch":`), arrayOf(events[i:min(i+40, len(events))], false)...)
		if env != "" {
			body = append(append(body, ','), env...)
		}
		body = append(body, '}')
		send(http.MethodPost, "/v1/batch", body, true)
	}
	for i, ev := range events {
		if i%3 != 0 {
			continue
		}
		path := []string{"/v1/track", "/v1/page", "/v1/identify", "/v1/t"}[(i/3)%4]
		send(http.MethodPost, path, ev, true)
	}
	return out.Bytes()
}

// bodyWriter is a ResponseWriter that keeps the body.
type bodyWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (w *bodyWriter) Header() http.Header         { return w.h }
func (w *bodyWriter) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *bodyWriter) WriteHeader(code int)        { w.code = code }

func arrayOf(evs [][]byte, spaced bool) []byte {
	b := []byte{'['}
	for i, ev := range evs {
		if i > 0 {
			b = append(b, ',')
			if spaced {
				b = append(b, "\n  "...)
			}
		}
		b = append(b, ev...)
	}
	return append(b, ']')
}

// generateEvents makes n Segment-shaped events from a fixed seed: the same bytes on every run.
func generateEvents(n int) [][]byte {
	g := &gen{r: rand.New(rand.NewPCG(15, 2026))}
	out := make([][]byte, n)
	for i := range out {
		out[i] = g.event(i)
	}
	return out
}

type gen struct{ r *rand.Rand }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *gen) ws() string {
	if g.r.IntN(6) == 0 {
		return g.pick(" ", "\n", "\t", "  ", "\r\n ")
	}
	return ""
}

// str is a JSON string literal, quotes included: plain ASCII mostly, with escapes, UTF-8 and controls.
func (g *gen) str() string {
	switch g.r.IntN(12) {
	case 0:
		return `"caf\u00e9 \ud83d\ude00 tab\there"`
	case 1:
		return `"quote \" back \\ slash \/ \b\f\n\r \u0001 \u001F \u007f"`
	case 2:
		return `"naïve 日本語 😀 Ünïcödé"`
	case 3:
		return `""`
	case 4:
		return `"\u0041\u00DF\u6771\uD834\uDD1E"`
	case 5:
		return `"https://example.com/p/` + fmt.Sprint(g.r.IntN(1000)) + `?utm_source=x&y=%20z#frag"`
	default:
		return fmt.Sprintf(`"%s-%d"`, g.pick("pro", "free", "landing", "Signed Up", "blue", "x"), g.r.IntN(100000))
	}
}

func (g *gen) number() string {
	return g.pick("0", "-0", "1", "-1", "42", "1.0", "1.5", "-12.50", "1e3", "1E-7", "2.5e-5", "0.1", "1e21",
		"1e20", "123456789012345678901234", "9007199254740993", "9007199254740992", "1e308", "5e-324",
		"0.000001", "1e-7", "100", "3.14159265358979", "-0.0", "12345678.9")
}

func (g *gen) name() string {
	return g.pick(`"plan"`, `"value"`, `"a"`, `"b"`, `"Z"`, `"aa"`, `"ab"`, `"_x"`, `"é"`, `"\u00e9t\u00e9"`,
		`"日本"`, `"😀"`, `"\ud83d\ude00x"`, `"\uffff"`, `"a\nb"`, `"€"`, `"1"`, `"10"`, `"2"`, `"revenue"`,
		`"currency"`, `"url"`, `"path"`, `"name"`, `"email"`, `"title"`, `"search"`, `"referrer"`)
}

func (g *gen) value(depth int) string {
	k := g.r.IntN(10)
	if depth > 3 && k >= 7 {
		k = 0
	}
	switch k {
	case 0, 1, 2:
		return g.str()
	case 3, 4:
		return g.number()
	case 5:
		return g.pick("true", "false", "null")
	case 6:
		return g.object(depth+1, g.r.IntN(4))
	case 7:
		parts := make([]string, g.r.IntN(4))
		for i := range parts {
			parts[i] = g.ws() + g.value(depth+1) + g.ws()
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		return g.object(depth+1, g.r.IntN(5))
	}
}

// object has up to n members with distinct names, unordered.
func (g *gen) object(depth, n int) string {
	var names []string
	for range n {
		nm := g.name()
		if !slices.Contains(names, nm) {
			names = append(names, nm)
		}
	}
	parts := make([]string, len(names))
	for i, nm := range names {
		parts[i] = g.ws() + nm + g.ws() + ":" + g.ws() + g.value(depth) + g.ws()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func (g *gen) ts() string {
	return g.pick(`"2026-11-30T04:59:58.123Z"`, `"2026-11-30T05:00:00Z"`, `"2026-11-30T06:00:00.5+01:00"`,
		`"2026-11-30T04:00:00.123456789Z"`, `"1999-12-31T23:59:59Z"`, `"2027-01-01T00:00:00Z"`, `"not a time"`,
		`1732943000000`, `null`, `"2026-02-30T00:00:00Z"`)
}

func (g *gen) event(i int) []byte {
	typ := g.pick("track", "track", "track", "page", "page", "identify", "screen", "group", "alias")
	var m [][2]string
	add := func(k, v string) { m = append(m, [2]string{k, v}) }
	switch g.r.IntN(20) {
	case 0:
		add("type", `"Track"`)
	case 1:
		add("type", `"launch"`)
	case 2: // a generic webhook signal
	default:
		add("type", `"`+typ+`"`)
	}
	switch g.r.IntN(8) {
	case 0:
		add("userId", fmt.Sprint(1000+i))
	case 1:
		add("anonymousId", `"guest"`)
		add("userId", fmt.Sprintf(`"u-%d"`, i))
	case 2:
		add("anonymousId", fmt.Sprintf(`"a\u00e9-%d"`, i))
	case 3:
		add("userId", fmt.Sprintf(`"user-%d"`, i))
		add("anonymousId", fmt.Sprintf(`"anon-%d"`, i%37))
	case 4: // no id
	default:
		add("anonymousId", fmt.Sprintf(`"anon-%08d"`, i%97))
	}
	if g.r.IntN(5) != 0 {
		add("messageId", fmt.Sprintf(`"msg-%d-%d"`, i, g.r.IntN(1000)))
	}
	switch typ {
	case "track":
		add("event", g.pick(`"Signed Up"`, `"Order Completed"`, `"Caf\u00e9 Visited"`, `""`, `"Checkout Started"`))
	case "page", "screen":
		if g.r.IntN(2) == 0 {
			add("name", g.pick(`"Pricing"`, `"Home"`, `""`))
		}
	case "group":
		add("groupId", fmt.Sprintf(`"g-%d"`, i%5))
	case "alias":
		add("previousId", fmt.Sprintf(`"prev-%d"`, i))
	}
	if g.r.IntN(4) != 0 {
		props := g.object(1, g.r.IntN(9))
		if typ == "page" && g.r.IntN(2) == 0 {
			props = `{"url":"https://example.com/pricing?plan=pro","path":"/pricing","title":"Pricing \u2014 Shop",` +
				`"referrer":"https://google.com/","search":"?plan=pro","n":` + g.number() + `}`
		}
		add("properties", props)
	}
	if typ == "identify" || g.r.IntN(6) == 0 {
		add("traits", `{"email":`+g.pick(`"  Jane.Doe@Example.COM "`, `"not-an-email"`, `"a@b"`, `"x@y.z"`, `null`)+`,"plan":`+g.str()+`}`)
	}
	if g.r.IntN(5) != 0 {
		ctx := []string{`"library":{"name":"analytics.js","version":"4.1.` + fmt.Sprint(g.r.IntN(9)) + `"}`}
		if g.r.IntN(2) == 0 {
			ctx = append(ctx, `"page":{"url":"https://example.com/docs/`+fmt.Sprint(g.r.IntN(50))+`?q=1","path":"/docs","title":"Docs","referrer":"https://news.example/","search":"?q=1"}`)
		}
		if g.r.IntN(2) == 0 {
			ctx = append(ctx, `"campaign":{"source":"news","medium":"email","name":"winter","term":"shoes","content":"b"}`)
		}
		if g.r.IntN(3) == 0 {
			ctx = append(ctx, `"traits":{"email":"Ctx@Example.com","name":"C"}`)
		}
		if g.r.IntN(2) == 0 {
			ctx = append(ctx, `"ip":"203.0.113.`+fmt.Sprint(g.r.IntN(255))+`"`, `"userAgent":"Mozilla/5.0 (X11; Linux x86_64) \u00e9"`,
				`"locale":"fr-FR"`, `"timezone":"Europe/Paris"`)
		}
		if g.r.IntN(8) == 0 {
			ctx = append(ctx, `"groupId":"cg-1"`)
		}
		g.r.Shuffle(len(ctx), func(a, b int) { ctx[a], ctx[b] = ctx[b], ctx[a] })
		add("context", "{"+strings.Join(ctx, ","+g.ws())+"}")
	}
	if g.r.IntN(5) != 0 {
		add("timestamp", g.ts())
	}
	if g.r.IntN(3) == 0 {
		add("originalTimestamp", g.ts())
	}
	if g.r.IntN(2) == 0 {
		add("sentAt", g.ts())
	}
	if g.r.IntN(6) == 0 {
		add("receivedAt", `"2026-11-30T05:00:00.900Z"`)
	}
	if g.r.IntN(4) == 0 {
		add("integrations", `{"All":true}`)
	}
	if g.r.IntN(10) == 0 {
		add("email", `"root@example.org"`)
	}
	switch g.r.IntN(40) { // invalid events
	case 0:
		add("event", `"again"`) // a duplicate name (or a second event member)
	case 1:
		add("bad", "\"\xff\xfe\"")
	case 2:
		add("bad", `"\ud800 alone"`)
	case 3:
		add("big", "1e400")
	}
	g.r.Shuffle(len(m), func(a, b int) { m[a], m[b] = m[b], m[a] })
	parts := make([]string, len(m))
	for k, kv := range m {
		parts[k] = g.ws() + `"` + kv[0] + `"` + g.ws() + ":" + g.ws() + kv[1] + g.ws()
	}
	return []byte(g.ws() + "{" + strings.Join(parts, ",") + "}" + g.ws())
}
