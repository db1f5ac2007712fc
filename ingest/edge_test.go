package ingest

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// TestLimitsGzipAndSignature covers 413, gzip (and the zip bomb), 415 and X-Signature.
func TestLimitsGzipAndSignature(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.MaxEventBytes, c.MaxRequestBytes, c.MaxWebhookRequestBytes = 1000, 4000, 4000 })
	ev := trackEvent("a1", 1)
	big := trackEvent(strings.Repeat("x", 1000), 1)
	var batch [][]byte
	for i := range 12 {
		batch = append(batch, trackEvent(fmt.Sprint("b", i), i))
	}
	tooBig := append(append([]byte{'['}, bytes.Join(batch, []byte{','})...), ']')
	bomb := append([]byte(`{"type":"track","anonymousId":"a","p":"`), bytes.Repeat([]byte{'a'}, 1<<20)...)
	bomb = append(bomb, `"}`...)
	for _, tc := range []struct {
		name string
		key  string
		body []byte
		hdr  map[string]string
		code int
		msg  string
	}{
		{name: "event over limit", key: "dev-key", body: big, code: 400, msg: "more than the limit of 1000"},
		{name: "request over limit", key: "dev-key", body: tooBig, code: 413, msg: "larger than the limit of 4000"},
		{name: "gzip", key: "dev-key", body: gz(t, ev), hdr: map[string]string{"Content-Encoding": "gzip"}, code: 200},
		{name: "gzip bomb", key: "dev-key", body: gz(t, bomb), hdr: map[string]string{"Content-Encoding": "gzip"}, code: 413},
		{name: "gzip corrupt", key: "dev-key", body: []byte("not gzip"), hdr: map[string]string{"Content-Encoding": "gzip"}, code: 400, msg: "gzip"},
		{name: "unknown encoding", key: "dev-key", body: ev, hdr: map[string]string{"Content-Encoding": "br"}, code: 415},
		{name: "signature right", key: "signed-key", body: ev, hdr: map[string]string{"X-Signature": sign("shh", ev)}, code: 200},
		{name: "signature wrong", key: "signed-key", body: ev, hdr: map[string]string{"X-Signature": sign("no", ev)}, code: 401},
		{name: "signature missing", key: "signed-key", body: ev, code: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := post(t, e.webhook(tc.key), tc.body, tc.hdr)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, r, tc.code)
			}
			if tc.msg != "" && !strings.Contains(r.Error, tc.msg) {
				t.Errorf("error %q does not say %q", r.Error, tc.msg)
			}
		})
	}
}

// TestBatchRejectsToDLQ checks that in a batch the valid events are accepted and each invalid one is listed and
// dead-lettered with its reason, and that only the valid ones reach signals.raw.
func TestBatchRejectsToDLQ(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.MaxEventBytes = 1000 })
	body := fmt.Sprintf(`{"batch":[%s, 17, {"type":"launch","anonymousId":"x"}, %s, {"type":"track","event":"no ids"},
		{"form":"contact","email":"a@b.c"}, %s]}`,
		trackEvent("ok1", 1), trackEvent("ok2", 2), trackEvent(strings.Repeat("y", 1000), 3))
	resp, r := post(t, e.webhook("dev-key"), []byte(body), nil)
	if resp.StatusCode != 200 || r.Accepted != 3 {
		t.Fatalf("got %d %+v, want 200 with 3 accepted", resp.StatusCode, r)
	}
	wantRej := map[int]string{1: "not a JSON object", 2: "type must be one of", 4: "userId or anonymousId", 6: "more than the limit"}
	if len(r.Rejected) != len(wantRej) {
		t.Fatalf("rejected %+v, want indexes 1, 2, 4, 6", r.Rejected)
	}
	for _, rej := range r.Rejected {
		if !strings.Contains(rej.Reason, wantRej[rej.Index]) {
			t.Errorf("rejected[%d] = %q, want it to say %q", rej.Index, rej.Reason, wantRej[rej.Index])
		}
	}
	recs, evs := e.readRaw(t)
	if len(recs) != 3 {
		t.Fatalf("signals.raw has %d records, want 3", len(recs))
	}
	sources := map[string]string{}
	for i, ev := range evs {
		_, id, _ := schemas.SplitKey(recs[i].Key)
		sources[id] = ev.Source
	}
	if sources["ok1"] != "segment" || sources["ok2"] != "segment" {
		t.Errorf("segment events: %v", sources)
	}
	// The generic webhook event has no id: it is keyed by its content hash and marked webhook.
	webhooks := 0
	for _, s := range sources {
		if s == schemas.SourceWebhook {
			webhooks++
		}
	}
	if webhooks != 1 {
		t.Errorf("want one webhook-source event, got %v", sources)
	}
	dlq := e.readExact(t, schemas.TopicDLQ)
	if len(dlq) != 4 {
		t.Fatalf("signals.dlq has %d records, want 4", len(dlq))
	}
	for _, rec := range dlq {
		var dl schemas.DeadLetter
		if err := schemas.DeadLetters.Decode(rec.Value, &dl); err != nil {
			t.Fatal(err)
		}
		if dl.Stage != "ingest" || dl.Tenant != "dev" || dl.Reason == "" || len(dl.Payload) == 0 {
			t.Errorf("dead letter %+v", dl)
		}
		if string(dl.Payload) == "17" && !strings.Contains(dl.Reason, "not a JSON object") {
			t.Errorf("dead letter of 17 says %q", dl.Reason)
		}
	}
}

// TestUnavailable checks the 503 answers: full producer buffer, Kafka refusing the records, and the timeout.
func TestUnavailable(t *testing.T) {
	many := []byte{'['}
	for i := range 50 {
		if i > 0 {
			many = append(many, ',')
		}
		// Padded past 512 bytes so that the "kafka refuses" case's batch limit refuses every record.
		many = append(many, trackEvent(fmt.Sprint("m", i, strings.Repeat("z", 200)), i)...)
	}
	many = append(many, ']')
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{name: "buffer full", mod: func(c *Config) { c.MaxBufferedRecords = 10 }},
		{name: "kafka refuses", mod: func(c *Config) { c.KafkaOpts = []kgo.Opt{kgo.ProducerBatchMaxBytes(512)} }},
		{name: "timeout", mod: func(c *Config) { c.ProduceTimeout, c.Linger = 20*time.Millisecond, 5*time.Second }},
		{name: "too many in flight", mod: func(c *Config) { c.MaxInFlight, c.Linger, c.ShutdownTimeout = 1, 2*time.Second, 10*time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEdge(t, func(c *Config) { c.RetryAfter, c.ShutdownTimeout = 7*time.Second, time.Second; tc.mod(c) })
			if tc.name == "too many in flight" {
				// One request holds the only slot while its record lingers.
				go func() {
					if resp, err := http.Post(e.webhook("dev-key"), "application/json", bytes.NewReader(trackEvent("slot", 1))); err == nil {
						resp.Body.Close()
					}
				}()
				waitUntil(t, "the first request is in flight", func() bool { return e.srv.inFlight.Load() == 1 })
			}
			resp, r := post(t, e.webhook("dev-key"), many, nil)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
				t.Fatalf("got %d Retry-After %q %+v, want 503 with Retry-After 7", resp.StatusCode, resp.Header.Get("Retry-After"), r)
			}
		})
	}
}

// TestMonthlyLimit checks 429 with Retry-After and X-RateLimit-Reset once a key used its month, and that the
// count is shared: a second replica on the same topics refuses too, and a new month starts from zero.
func TestMonthlyLimit(t *testing.T) {
	now := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	e := startEdge(t, func(c *Config) { c.Now = clock })
	resp, r := post(t, e.webhook("small-key"), []byte("["+string(trackEvent("a", 1))+","+string(trackEvent("b", 2))+
		","+string(trackEvent("c", 3))+"]"), nil)
	if resp.StatusCode != 200 || r.Accepted != 3 {
		t.Fatalf("first batch: %d %+v", resp.StatusCode, r)
	}
	resp, _ = post(t, e.webhook("small-key"), []byte("["+string(trackEvent("d", 1))+","+string(trackEvent("e", 2))+"]"), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("second batch: %d", resp.StatusCode)
	}
	resp, r = post(t, e.webhook("small-key"), trackEvent("f", 1), nil)
	if resp.StatusCode != 429 {
		t.Fatalf("over the limit: got %d %+v, want 429", resp.StatusCode, r)
	}
	reset := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if got := resp.Header.Get("X-RateLimit-Reset"); got != strconv.FormatInt(reset.Unix(), 10) {
		t.Errorf("X-RateLimit-Reset %q, want %d", got, reset.Unix())
	}
	if got := resp.Header.Get("Retry-After"); got != "3600" {
		t.Errorf("Retry-After %q, want 3600", got)
	}
	// Another key of the edge is not limited.
	if resp, _ := post(t, e.webhook("dev-key"), trackEvent("g", 1), nil); resp.StatusCode != 200 {
		t.Errorf("unlimited key got %d", resp.StatusCode)
	}

	// A second replica on the same topics learns the first one's count from the usage topic.
	e2 := startEdgeOn(t, e, func(c *Config) { c.Now = clock; c.ReplicaID = "r2" })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := post(t, e2.webhook("small-key"), trackEvent("h", 1), nil)
		if resp.StatusCode == 429 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second replica still answers %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The month turns: the limit resets.
	now = reset.Add(time.Minute)
	if resp, r := post(t, e.webhook("small-key"), trackEvent("i", 1), nil); resp.StatusCode != 200 {
		t.Errorf("next month: %d %+v", resp.StatusCode, r)
	}
}

// TestKeyReload checks that a key added to the file is accepted without a restart, and a broken file keeps the
// previous keys.
func TestKeyReload(t *testing.T) {
	e := startEdge(t, nil)
	ev := trackEvent("a", 1)
	if resp, _ := post(t, e.webhook("new-key"), ev, nil); resp.StatusCode != 401 {
		t.Fatalf("new key before reload: %d", resp.StatusCode)
	}
	writeKeys(t, e.keys, `{"keys":{"new-key":{"id":"n","tenant":"t2","endpoint_type":"signal-staging"}}}`)
	waitStatus(t, e.webhook("new-key"), ev, 200)
	if resp, _ := post(t, e.webhook("dev-key"), ev, nil); resp.StatusCode != 401 {
		t.Errorf("removed key: %d, want 401", resp.StatusCode)
	}
	writeKeys(t, e.keys, `{"keys": broken`)
	waitUntil(t, "the broken file was tried", func() bool {
		var m dto.Metric
		_ = e.srv.m.keyReloads.WithLabelValues("error").Write(&m)
		return m.GetCounter().GetValue() > 0
	})
	if resp, _ := post(t, e.webhook("new-key"), ev, nil); resp.StatusCode != 200 {
		t.Errorf("after a broken file: %d, want the previous keys to stay", resp.StatusCode)
	}
}

func waitStatus(t *testing.T, url string, body []byte, code int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, r := post(t, url, body, nil)
		if resp.StatusCode == code {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d %+v, want %d", resp.StatusCode, r, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeyReloadOnSIGHUP checks that SIGHUP reloads the registry (polling is effectively off here).
func TestKeyReloadOnSIGHUP(t *testing.T) {
	e := startEdge(t, func(c *Config) { c.KeysPollInterval = time.Hour })
	writeKeys(t, e.keys, `{"keys":{"hup-key":{"id":"h","tenant":"t3","endpoint_type":"signal-staging"}}}`)
	if resp, _ := post(t, e.webhook("hup-key"), trackEvent("a", 1), nil); resp.StatusCode != 401 {
		t.Fatalf("before SIGHUP: %d, want 401 (no polling)", resp.StatusCode)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e.webhook("hup-key"), trackEvent("a", 1), 200)
}

// TestRequestBounds covers the bounds that keep one request's memory in check: events per request, the size
// of an event once the batch context is merged, and the request memory budget (413 when a request can never
// fit, 503 when it does not fit now).
func TestRequestBounds(t *testing.T) {
	e := startEdge(t, func(c *Config) {
		c.MaxEventsPerRequest, c.MaxEventBytes, c.MaxRequestBytes, c.MaxRequestMemory = 8, 1000, 4000, 16000
		c.Linger = 2 * time.Second
	})
	small := func(i int) string { return fmt.Sprintf(`{"type":"track","anonymousId":"b%d"}`, i) }
	var nine []string
	for i := range 9 {
		nine = append(nine, small(i))
	}
	bigCtx := `{"pad":"` + strings.Repeat("p", 900) + `"}`
	hugeCtx := `{"pad":"` + strings.Repeat("p", 1500) + `"}`
	for _, tc := range []struct {
		name string
		body string
		code int
		msg  string
		rej  string
	}{
		{name: "too many events", body: "[" + strings.Join(nine, ",") + "]", code: 413, msg: "more than 8"},
		{name: "merged event too large", body: `{"batch":[` + small(1) + `,` + string(trackEvent("c1", 1)) + `],"context":` + bigCtx + `}`,
			code: 200, rej: "batch context merged"},
		{name: "never fits the memory budget", body: `{"batch":[` + strings.Join(nine[:5], ",") + `],"context":` + hugeCtx + `}`,
			code: 413, msg: "once the batch context is merged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := post(t, e.webhook("dev-key"), []byte(tc.body), nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("got %d %+v, want %d", resp.StatusCode, r, tc.code)
			}
			if tc.msg != "" && !strings.Contains(r.Error, tc.msg) {
				t.Errorf("error %q does not say %q", r.Error, tc.msg)
			}
			if tc.rej != "" && (len(r.Rejected) != 1 || !strings.Contains(r.Rejected[0].Reason, tc.rej) || r.Accepted != 1) {
				t.Errorf("got %+v, want one accepted and one rejected for %q", r, tc.rej)
			}
		})
	}
	t.Run("busy memory budget", func(t *testing.T) {
		var evs []string
		for i := range 8 {
			evs = append(evs, small(i)+strings.Repeat(" ", 380))
		}
		body := []byte("[" + strings.Join(evs, ",") + "]")
		done := make(chan int, 1)
		go func() {
			resp, err := http.Post(e.webhook("dev-key"), "application/json", bytes.NewReader(body))
			if err != nil {
				done <- -1
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		// The first request holds its memory while its records linger.
		// Past its body (reserved as it arrives): the records it holds while they linger.
		waitUntil(t, "the first request reserved its records", func() bool { return e.srv.memUsed.Load() > 2*int64(len(body)) })
		resp, r := post(t, e.webhook("dev-key"), body, nil)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Errorf("second request: %d %+v, want 503 with Retry-After", resp.StatusCode, r)
		}
		if code := <-done; code != 200 {
			t.Errorf("first request: %d, want 200", code)
		}
	})
}
