package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const planKeys = `{"keys": {
  "plan-a":  {"id": "plan-a", "tenant": "plan", "endpoint_type": "signal-staging"},
  "plan-b":  {"id": "plan-b", "tenant": "plan", "endpoint_type": "signal-staging"},
  "race-1":  {"id": "race-1", "tenant": "race", "endpoint_type": "signal-staging"},
  "race-2":  {"id": "race-2", "tenant": "race", "endpoint_type": "signal-staging"},
  "dev-key": {"id": "dev", "tenant": "dev", "endpoint_type": "signal-staging"}
}, "tenants": {"plan": {"monthly_limit": 10}, "race": {"monthly_limit": 25}}}`

func events(prefix string, n int) []byte {
	var evs [][]byte
	for i := range n {
		evs = append(evs, trackEvent(fmt.Sprint(prefix, i), i))
	}
	return append(append([]byte("["), bytes.Join(evs, []byte(","))...), ']')
}

// TestPlanLimitPerTenant: the plan limit counts every key of a tenant, in events, and a request that would cross
// it is refused whole (nothing of it is written, so the retry is clean); concurrent requests cannot pass it
// together; a second replica counts what the first accepted.
func TestPlanLimitPerTenant(t *testing.T) {
	now := time.Date(2026, 12, 15, 12, 0, 0, 0, time.UTC)
	e := startEdgeWith(t, planKeys, func(c *Config) { c.Now = func() time.Time { return now } })
	steps := []struct {
		key       string
		n         int
		code      int
		remaining string // X-RateLimit-Remaining of a 429
	}{
		{"plan-a", 6, 200, ""},
		{"plan-b", 5, 429, "4"}, // 6 + 5 > 10: refused whole
		{"plan-b", 4, 200, ""},  // exactly the limit
		{"plan-a", 1, 429, "0"},
	}
	for i, s := range steps {
		resp, r := post(t, e.webhook(s.key), events(fmt.Sprint("s", i, "-"), s.n), nil)
		if resp.StatusCode != s.code {
			t.Fatalf("step %d (%s, %d events): got %d %+v, want %d", i, s.key, s.n, resp.StatusCode, r, s.code)
		}
		if s.code == 429 {
			if got := resp.Header.Get("X-RateLimit-Remaining"); got != s.remaining {
				t.Errorf("step %d: X-RateLimit-Remaining %q, want %q", i, got, s.remaining)
			}
			if got := resp.Header.Get("X-RateLimit-Limit"); got != "10" {
				t.Errorf("step %d: X-RateLimit-Limit %q, want the plan's 10", i, got)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra != 16*24*3600+12*3600 {
				t.Errorf("step %d: Retry-After %q, want the seconds to the next UTC month", i, resp.Header.Get("Retry-After"))
			}
		}
	}
	// Another tenant is not limited.
	if resp, _ := post(t, e.webhook("dev-key"), events("d", 3), nil); resp.StatusCode != 200 {
		t.Errorf("unlimited tenant: %d", resp.StatusCode)
	}

	// 40 concurrent one-event requests over two keys of a tenant with 25 left: exactly 25 are accepted.
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(e.webhook(fmt.Sprint("race-", i%2+1)), "application/json", bytes.NewReader(trackEvent(fmt.Sprint("r", i), i)))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != 25 || codes[429] != 15 {
		t.Errorf("concurrent requests: %v, want 25 × 200 and 15 × 429", codes)
	}
	_, evs := e.readRaw(t)
	perTenant := map[string]int{}
	for _, ev := range evs {
		perTenant[ev.Tenant]++
	}
	if perTenant["plan"] != 10 || perTenant["race"] != 25 || perTenant["dev"] != 3 {
		t.Errorf("signals.raw per tenant %v, want plan 10, race 25, dev 3", perTenant)
	}

	// A second replica learns the tenant's count (both keys) from the usage topic.
	e2 := startEdgeOn(t, e, func(c *Config) { c.Now = func() time.Time { return now }; c.ReplicaID = "r2" })
	waitUntil(t, "the second replica refuses the used-up plan", func() bool {
		resp, _ := post(t, e2.webhook("plan-b"), trackEvent("late", 1), nil)
		return resp.StatusCode == 429
	})
}

// TestKeyIDsValidated: ids and tenants that would break the usage topic's keys (a '|') or logs are refused at
// load with a message naming the rule, and so is a replica id with a '|'.
func TestKeyIDsValidated(t *testing.T) {
	for _, tc := range []struct{ name, file, err string }{
		{"pipe in key id", `{"keys":{"k":{"id":"a|b","tenant":"t","endpoint_type":"signal-staging"}}}`, "no '|'"},
		{"space in key id", `{"keys":{"k":{"id":"a b","tenant":"t","endpoint_type":"signal-staging"}}}`, "key id"},
		{"bad tenant", `{"keys":{"k":{"id":"a","tenant":"t\n","endpoint_type":"signal-staging"}}}`, "tenant"},
		{"bad tenant in tenants", `{"keys":{},"tenants":{"a|b":{"monthly_limit":1}}}`, "tenant"},
		{"negative plan", `{"keys":{},"tenants":{"t":{"monthly_limit":-1}}}`, "negative"},
		{"public key with a secret", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"signal-staging","public":true,"allowed_origins":["*"],"signing_secret":"x"}}}`, "public"},
		{"public key without origins", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"signal-staging","public":true}}}`, "allowed_origins"},
		{"origin with a path", `{"keys":{"k":{"id":"a","tenant":"t","endpoint_type":"signal-staging","allowed_origins":["https://x.io/a"]}}}`, "not an origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseKeys([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want it to say %q", err, tc.err)
			}
		})
	}
	if _, err := New(Config{KeysFile: "../testenv/dev-keys.json", ReplicaID: "a|b"}); err == nil || !strings.Contains(err.Error(), "-replica-id") {
		t.Errorf("replica id with '|': %v", err)
	}
}
