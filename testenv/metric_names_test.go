package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// Labels Prometheus puts on every series from the target it scraped (ServiceMonitor target labels), and the one
// series it makes itself: neither comes from a stage.
var (
	targetLabels      = map[string]bool{"job": true, "instance": true, "namespace": true, "pod": true, "service": true, "container": true, "endpoint": true}
	prometheusMetrics = map[string]bool{"up": true}
)

// deployQuery is one PromQL expression of deploy/: a dashboard panel's or an alert rule's.
type deployQuery struct{ where, expr string }

// deployQueries reads every expression of deploy/dashboards/*.json and of the PrometheusRule, and the names the
// rules record (which a query may use without a stage exporting them).
func deployQueries(t *testing.T) ([]deployQuery, map[string]bool) {
	t.Helper()
	var qs []deployQuery
	dashboards, _ := filepath.Glob(filepath.Join(repoRoot(), "deploy", "dashboards", "*.json"))
	if len(dashboards) == 0 {
		t.Fatal("no dashboards in deploy/dashboards")
	}
	for _, path := range dashboards {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var walk func(v any, title string)
		walk = func(v any, title string) {
			switch v := v.(type) {
			case map[string]any:
				if s, ok := v["title"].(string); ok {
					title = s
				}
				if e, ok := v["expr"].(string); ok {
					qs = append(qs, deployQuery{filepath.Base(path) + ": " + title, e})
				}
				for _, c := range v {
					walk(c, title)
				}
			case []any:
				for _, c := range v {
					walk(c, title)
				}
			}
		}
		walk(d, "")
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "k8s", "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []struct{ Alert, Record, Expr string }
			}
		}
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	recorded := map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			qs = append(qs, deployQuery{"prometheusrule.yaml: " + r.Alert + r.Record, r.Expr})
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	if len(qs) < 20 {
		t.Fatalf("found only %d expressions in deploy/", len(qs))
	}
	return qs, recorded
}

// missingMetrics returns, for each query, the metric names and labels it uses that exp does not export.
func missingMetrics(qs []deployQuery, recorded map[string]bool, exp exposition) ([]string, error) {
	var missing []string
	for _, q := range qs {
		refs, err := parsePromQL(q.expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", q.where, err)
		}
		for name, labels := range refs.metrics {
			if prometheusMetrics[name] || recorded[name] {
				continue
			}
			have, ok := exp[name]
			if !ok {
				missing = append(missing, fmt.Sprintf("%s: metric %s", q.where, name))
				continue
			}
			for l := range labels {
				if !have[l] && !targetLabels[l] && l != "__name__" {
					missing = append(missing, fmt.Sprintf("%s: label %s of %s (it has %s)", q.where, l, name, labelSet(have)))
				}
			}
		}
		for l := range refs.grouping {
			found := targetLabels[l]
			for name := range refs.metrics {
				found = found || exp[name][l]
			}
			if !found {
				missing = append(missing, fmt.Sprintf("%s: grouping label %s is on none of its metrics", q.where, l))
			}
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// TestDeployMetricsExported runs the three stages against the real Kafka and ClickHouse, makes them export
// every series the dashboards and alerts use (an accepted event, a 429 at a monthly limit, a row ClickHouse
// refuses), scrapes each stage's /metrics, and fails for any metric or label named in deploy/ that no stage
// exports: a dashboard panel or an alert over a name that does not exist shows nothing and never fires.
func TestDeployMetricsExported(t *testing.T) {
	qs, recorded := deployQueries(t)
	k, ch, bin := NewKafka(t, 3), NewClickHouse(t), buildStages(t)
	keys := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(keys, []byte(`{"keys": {
		"dev-key": {"id": "dev", "tenant": "dev", "endpoint_type": "signal-staging"},
		"limited-key": {"id": "limited", "tenant": "limited", "endpoint_type": "signal-staging", "monthly_limit": 1}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3"}
	ingestAddr, adminAddr, sinkAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startStage(t, bin, "sink", append(common, "-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database,
		"-metrics-addr", sinkAddr)...)
	startStage(t, bin, "processor", append(common, "-state-dir", t.TempDir(), "-admin-addr", adminAddr)...)
	ingestAdmin := freeAddr(t)
	startStage(t, bin, "ingest", append(common, "-addr", ingestAddr, "-admin-addr", ingestAdmin, "-keys", keys)...)
	base := "http://" + ingestAddr
	waitFor(t, 60*time.Second, "ingest /readyz", func() bool { return httpStatus(base+"/readyz") == http.StatusOK })

	// ClickHouse refuses any signal named "Refused" once the sink created the table (as the sink's own tests do).
	waitFor(t, 60*time.Second, "the sink's migrations", func() bool {
		var n uint64
		return ch.Conn.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ? AND name = 'signals'",
			ch.Database).Scan(&n) == nil && n == 1
	})
	if err := ch.Conn.Exec(context.Background(),
		"ALTER TABLE signals ADD COLUMN refused UInt8 MATERIALIZED throwIf(event = 'Refused')"); err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().UnixNano()
	post := func(key, event string, want int) {
		t.Helper()
		body := fmt.Sprintf(`{"type":"track","event":%q,"anonymousId":"anon-%d","messageId":"m-%s-%d"}`, event, stamp, event, stamp)
		resp, err := http.Post(base+"/api/signal-staging/webhook/"+key, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: got %d %s, want %d", key, event, resp.StatusCode, b, want)
		}
	}
	post("dev-key", "Demo Requested", http.StatusOK)
	post("dev-key", "Refused", http.StatusOK)
	post("limited-key", "First", http.StatusOK)
	post("limited-key", "Over The Limit", http.StatusTooManyRequests)

	waitFor(t, 90*time.Second, "the event in signals and the refused one in dead_letters", func() bool {
		var a, b uint64
		ctx := context.Background()
		return ch.Conn.QueryRow(ctx, "SELECT count() FROM signals WHERE event = 'Demo Requested'").Scan(&a) == nil && a == 1 &&
			ch.Conn.QueryRow(ctx, "SELECT count() FROM dead_letters").Scan(&b) == nil && b >= 1
	})

	// Some series appear a moment later (the sink's lag after its next fetch, ingest's key reload poll), so scrape
	// until nothing is missing or the deadline passes, then report what is missing.
	var missing []string
	var exp exposition
	deadline := time.Now().Add(30 * time.Second)
	for {
		exp = exposition{}
		for _, u := range []string{"http://" + ingestAdmin, "http://" + adminAddr, "http://" + sinkAddr} {
			body, err := httpGet(u + "/metrics")
			if err != nil {
				t.Fatalf("scraping %s/metrics: %v", u, err)
			}
			if err := exp.add(body); err != nil {
				t.Fatalf("%s/metrics: %v", u, err)
			}
		}
		var err error
		if missing, err = missingMetrics(qs, recorded, exp); err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(missing) > 0 {
		t.Errorf("deploy/ uses what no stage exports:\n  %s", strings.Join(missing, "\n  "))
	}
	t.Logf("%d expressions of deploy/ checked against %d series names exported by ingest, processor and sink", len(qs), len(exp))
}

func httpStatus(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func httpGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}
