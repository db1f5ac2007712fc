package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// segmentKeys is the registry of the Segment end-to-end tests: a server write key, a browser (public) key that
// accepts any origin (the page's port is chosen at run time), and Webhooks (Actions) keys: plain, signed, and
// signed with an X-Api-Secret on top.
const segmentKeys = `{"keys": {
  "wk_server":  {"id": "server", "tenant": "e2e", "endpoint_type": "signal-staging"},
  "wk_browser": {"id": "browser", "tenant": "e2e", "endpoint_type": "signal-staging", "public": true, "allowed_origins": ["*"]},
  "wh_plain":   {"id": "wh-plain", "tenant": "e2e", "endpoint_type": "signal-staging"},
  "wh_signed":  {"id": "wh-signed", "tenant": "e2e", "endpoint_type": "signal-staging", "signing_secret": "segment-shared-secret"},
  "wh_both":    {"id": "wh-both", "tenant": "e2e", "endpoint_type": "signal-staging", "signing_secret": "segment-shared-secret",
                 "secret_hash": "sha256:d95938f10c90f5ec07f76fbb5d510d7cd01d94a87b4fe4341f54a4e042b63a8b"}
}}`

// webhookAPISecret is the X-Api-Secret of wh_both (its secret_hash above is sha256 of it).
const webhookAPISecret = "segment-api-secret"

// startSegmentPipeline is startPipeline with the registry keys.
func startSegmentPipeline(t *testing.T, keys string) *pipeline {
	t.Helper()
	p := &pipeline{k: NewKafka(t, 3), ch: NewClickHouse(t), bin: buildStages(t)}
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keyFile, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	p.common = []string{"-brokers", strings.Join(p.k.Brokers, ","), "-topic-prefix", p.k.Prefix, "-partitions", "3"}
	ingestAddr := freeAddr(t)
	startStage(t, p.bin, "sink", append(p.common, "-clickhouse-addr", p.ch.Addr, "-clickhouse-database", p.ch.Database,
		"-metrics-addr", freeAddr(t))...)
	startStage(t, p.bin, "processor", append(p.common, "-state-dir", t.TempDir(), "-admin-addr", freeAddr(t))...)
	startStage(t, p.bin, "ingest", append(p.common, "-addr", ingestAddr, "-keys", keyFile)...)
	p.base = "http://" + ingestAddr
	waitFor(t, 60*time.Second, "ingest /readyz", func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

func (p *pipeline) count(t *testing.T, query string, args ...any) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n uint64
	if err := p.ch.Conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestSegmentClientsEndToEnd is issue 14's acceptance for the sources: Segment's own libraries send the scripted
// session (an anonymous page and track, an identify with an email, then track, screen, group, alias) through the
// three binaries, and every call lands in ClickHouse once, with the anonymous page and track linked to the lead
// the identify created: analytics-node (npm), analytics-python (PyPI), analytics-go, and analytics.js in
// headless Chromium from another origin (CORS preflights, text/plain, the short routes; then its batching
// delivery on /v1/b).
func TestSegmentClientsEndToEnd(t *testing.T) {
	p := startSegmentPipeline(t, segmentKeys)
	run := fmt.Sprint(time.Now().UnixNano())
	ctx := context.Background()
	type client struct {
		name string
		send func(cfg ClientConfig) error
	}
	clients := []client{
		{"node", func(cfg ClientConfig) error { _, err := RunNodeClient(ctx, cfg); return err }},
		{"python", func(cfg ClientConfig) error { _, err := RunPythonClient(ctx, cfg); return err }},
		{"python-gzip", func(cfg ClientConfig) error { cfg.Gzip = true; _, err := RunPythonClient(ctx, cfg); return err }},
		{"go", func(cfg ClientConfig) error { _, err := RunGoClient(ctx, cfg, 0); return err }},
		{"browser", func(cfg ClientConfig) error {
			res, err := RunBrowserClient(ctx, cfg, false)
			return browserChecked(res, err, "/v1/t")
		}},
		{"browser-batching", func(cfg ClientConfig) error {
			res, err := RunBrowserClient(ctx, cfg, true)
			return browserChecked(res, err, "/v1/b")
		}},
	}
	calls := len(ScriptCalls("a", "u"))
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			anon, user := "anon-"+c.name+"-"+run, "user-"+c.name+"-"+run
			key := "wk_server"
			if strings.HasPrefix(c.name, "browser") {
				key = "wk_browser"
			}
			// The libraries' default retries: a failure shows as undelivered calls, not as a quick give-up.
			if err := c.send(ClientConfig{BaseURL: p.base, WriteKey: key, Calls: ScriptCalls(anon, user)}); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			q := "SELECT count() FROM signals FINAL WHERE tenant = 'e2e' AND (anonymous_id = ? OR user_id = ?)"
			ok := waitUntilTrue(90*time.Second, func() bool { return p.count(t, q, anon, user) >= uint64(calls) })
			if n := p.count(t, q, anon, user); !ok || n != uint64(calls) {
				t.Fatalf("%d signals in ClickHouse, want the %d calls once each", n, calls)
			}
			linked := "SELECT count() FROM signals FINAL WHERE tenant = 'e2e' AND anonymous_id = ? AND type IN ('page', 'track') " +
				"AND event IN ('Pricing', 'Demo Requested') AND status = 'linked' AND email = 'ada.lovelace@example.com'"
			if !waitUntilTrue(60*time.Second, func() bool { return p.count(t, linked, anon) == 2 }) {
				t.Errorf("the anonymous page and track are not linked to the lead (%d of 2)", p.count(t, linked, anon))
			}
			if n := p.count(t, "SELECT count() FROM identities FINAL WHERE tenant = 'e2e' AND id = ? AND email = 'ada.lovelace@example.com'", anon); n != 1 {
				t.Errorf("%d identity rows for the anonymous id, want 1", n)
			}
		})
	}
}

// browserChecked adds to analytics.js's own report that it reached the edge on the route its delivery uses
// and that nothing else was requested off the machine.
func browserChecked(res BrowserResult, err error, route string) error {
	if err != nil {
		return err
	}
	used := false
	for _, a := range res.Attempts {
		if strings.Contains(a.URL, route) {
			used = true
		}
		if a.Status != http.StatusOK {
			return fmt.Errorf("analytics.js attempt %s got %d (%s)", a.URL, a.Status, a.Error)
		}
	}
	if !used {
		return fmt.Errorf("analytics.js never posted to %s: %+v", route, res.Attempts)
	}
	return nil
}

func waitUntilTrue(timeout time.Duration, ok func() bool) bool {
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestWebhooksActionsReplay is issue 14's acceptance for the Webhooks (Actions) destination: WebhookSim sends
// what the destination sends (single events and batches of 1000 and 4000, signed and unsigned, POST and PUT),
// every request is accepted whole, and every event lands in ClickHouse exactly once, also after Segment
// redelivers a whole batch.
func TestWebhooksActionsReplay(t *testing.T) {
	p := startSegmentPipeline(t, segmentKeys)
	run := fmt.Sprint(time.Now().UnixNano())
	hook := func(key string) string { return p.base + "/api/signal-staging/webhook/" + key }
	cases := []struct {
		name   string
		sim    WebhookSim
		events int
	}{
		{"single unsigned POST", WebhookSim{URL: hook("wh_plain")}, 40},
		{"single signed PUT", WebhookSim{URL: hook("wh_signed"), Method: "PUT", SharedSecret: "segment-shared-secret"}, 40},
		{"batch 1000 unsigned POST", WebhookSim{URL: hook("wh_plain"), BatchSize: WebhookDefaultBatchSize}, 2000},
		{"batch 1000 signed PUT", WebhookSim{URL: hook("wh_signed"), Method: "PUT", SharedSecret: "segment-shared-secret",
			BatchSize: WebhookDefaultBatchSize}, 1000},
		{"batch 4000 signed with secret POST", WebhookSim{URL: hook("wh_both"), SharedSecret: "segment-shared-secret",
			Headers: map[string]string{"X-Api-Secret": webhookAPISecret}, BatchSize: WebhookMaxBatchSize}, 4000},
		{"batch 4000 unsigned PUT", WebhookSim{URL: hook("wh_plain"), Method: "PUT", BatchSize: WebhookMaxBatchSize}, 4000},
	}
	for i, c := range cases {
		prefix := fmt.Sprintf("wh%d-%s", i, run)
		evs := WebhookEvents(c.events, prefix)
		ds, err := c.sim.Send(context.Background(), evs)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.name == "batch 1000 signed PUT" {
			// Segment redelivers a batch it did not see answered: the same events again.
			again, err := c.sim.Send(context.Background(), evs)
			if err != nil {
				t.Fatalf("%s, redelivered: %v", c.name, err)
			}
			ds = append(ds, again...)
		}
		for _, d := range ds {
			var ans struct {
				Accepted int `json:"accepted"`
			}
			_ = json.Unmarshal(d.Answer, &ans)
			if d.Status != http.StatusOK || ans.Accepted != d.Events {
				t.Fatalf("%s: a %s of %d events (%d bytes) got %d %s", c.name, d.Method, d.Events, len(d.Body), d.Status, d.Answer)
			}
		}
	}
	for i, c := range cases {
		like := fmt.Sprintf("wh%d-%s-%%", i, run)
		q := "SELECT count() FROM signals FINAL WHERE tenant = 'e2e' AND anonymous_id LIKE ?"
		waitUntilTrue(120*time.Second, func() bool { return p.count(t, q, like) >= uint64(c.events) })
		rows := p.count(t, q, like)
		distinct := p.count(t, "SELECT uniqExact(anonymous_id) FROM signals FINAL WHERE tenant = 'e2e' AND anonymous_id LIKE ?", like)
		if rows != uint64(c.events) || distinct != uint64(c.events) {
			t.Errorf("%s: %d rows, %d distinct events in ClickHouse, want %d once each", c.name, rows, distinct, c.events)
		}
	}
}
