package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

// TestRuleFromQueueMapsAndRehydrates is issue 7's acceptance case with the real binaries against the real Kafka
// and ClickHouse: a sample row of the signal queue goes through `processor rules suggest`, is edited into a rule
// mapping demo-form submissions to "Demo Requested" with properties.email as the lead's email, and is applied
// with `processor rules apply`; a new visitor's earlier anonymous page views are then rehydrated to the lead,
// and the queue shows the event as mapped by the rule.
func TestRuleFromQueueMapsAndRehydrates(t *testing.T) {
	adminAddr := freeAddr(t)
	const token = "e2e-admin-token"
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPipeline(t, "-admin-addr", adminAddr, "-admin-token-file", tokenFile)
	ch, bin, base, common := p.ch, p.bin, p.base, p.common
	chFlags := []string{"-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database}
	run := time.Now().UnixNano()
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting %s: %d %s", body, resp.StatusCode, b)
		}
	}
	page := func(anon, path string) string {
		return fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":"p-%d-%s%s","properties":{"url":"https://acme.io%s"}}`,
			anon, run, anon, path, path)
	}
	demo := func(anon, email string) string {
		return fmt.Sprintf(`{"type":"track","event":"Form Submitted","anonymousId":%q,"messageId":"f-%d-%s",`+
			`"properties":{"form_name":"demo","email":%q,"company":"Acme %s"}}`, anon, run, anon, email, anon)
	}
	count := func(query string, args ...any) uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var n uint64
		if err := ch.Conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Logf("query %s: %v", query, err)
			return 0
		}
		return n
	}
	binary := func(name string, stdin io.Reader, args ...string) []byte {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		var out, errb bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
		}
		return out.Bytes()
	}
	queueRow := func(event string) map[string]any {
		t.Helper()
		out := binary("sink", nil, append(append([]string{"query"}, append(common, chFlags...)...), "-param", "tenant=dev", "signal_queue")...)
		for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
			var row map[string]any
			if err := json.Unmarshal(line, &row); err != nil {
				t.Fatalf("queue row %s: %v", line, err)
			}
			if row["event"] == event {
				return row
			}
		}
		t.Fatalf("no %q row in the signal queue:\n%s", event, out)
		return nil
	}

	// Before any rule: an anonymous visitor's page views and a demo form arrive unmapped.
	post(page("visitor-1", "/pricing"))
	post(demo("visitor-1", "first@lead.io"))
	waitFor(t, 90*time.Second, "the first demo form in signals", func() bool {
		return count("SELECT count() FROM signals FINAL WHERE anonymous_id = 'visitor-1' AND type = 'track'") == 1
	})

	// suggest from the queue's sample row, edit the draft, apply it.
	row := queueRow("Form Submitted")
	if row["latest_rule_id"] != "" {
		t.Fatalf("queue row mapped before any rule: %v", row)
	}
	dir := t.TempDir()
	sample := filepath.Join(dir, "row.json")
	rowJSON, _ := json.Marshal(row)
	if err := os.WriteFile(sample, rowJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	rulesArgs := append([]string{"rules"}, common...)
	draftYAML := binary("processor", nil, append(rulesArgs, "suggest", "-tenant", "dev", sample)...)
	var draft map[string]any
	if err := yaml.Unmarshal(draftYAML, &draft); err != nil {
		t.Fatalf("draft is not YAML: %v\n%s", err, draftYAML)
	}
	match, _ := draft["match"].(map[string]any)
	if draft["tenant"] != "dev" || match["type"] != "track" || match["event"] != "Form Submitted" {
		t.Fatalf("draft does not match the sample's type and event:\n%s", draftYAML)
	}
	draft["id"], draft["signal"] = "demo-requested", "Demo Requested"
	match["conditions"] = []map[string]any{{"path": "properties.form_name", "op": "eq", "value": "demo"}}
	draft["map"] = map[string]string{"email": "properties.email", "company": "properties.company"}
	edited, _ := json.Marshal(draft)
	ruleFile := filepath.Join(dir, "rule.json")
	if err := os.WriteFile(ruleFile, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	binary("processor", nil, append(rulesArgs, "apply", ruleFile)...)

	// The running processor has it in effect (its rules API answers from the Set in effect).
	waitFor(t, 30*time.Second, "the rule in effect on the processor", func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/api/signal-staging/rules/dev/demo-requested", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// A new visitor browses anonymously (held cold), then requests a demo.
	post(page("visitor-2", "/pricing"))
	post(page("visitor-2", "/docs/setup"))
	waitFor(t, 90*time.Second, "visitor-2's page views stored cold", func() bool {
		return count("SELECT count() FROM signals FINAL WHERE anonymous_id = 'visitor-2' AND type = 'page' AND status = 'cold'") == 2
	})
	post(demo("visitor-2", "Jane@Example.com"))

	const lead = "jane@example.com"
	waitFor(t, 90*time.Second, "visitor-2's page views rehydrated to the lead", func() bool {
		return count("SELECT count() FROM signals FINAL WHERE anonymous_id = 'visitor-2' AND type = 'page' "+
			"AND status = 'linked' AND email = ? AND version > 1", lead) == 2
	})
	if n := count("SELECT count() FROM (SELECT signal_id FROM signals FINAL WHERE anonymous_id = 'visitor-2' " +
		"GROUP BY signal_id HAVING count() = 1)"); n != 3 {
		t.Errorf("visitor-2 has %d signals with one logical row each (FINAL), want 3", n)
	}
	if n := count("SELECT count() FROM signals FINAL WHERE anonymous_id = 'visitor-2'"); n != 3 {
		t.Errorf("visitor-2 has %d rows with FINAL, want 3", n)
	}
	waitFor(t, 30*time.Second, "the demo form mapped by the rule", func() bool {
		return count("SELECT count() FROM signals FINAL WHERE anonymous_id = 'visitor-2' AND type = 'track' "+
			"AND rule_id = 'demo-requested' AND mapped_name = 'Demo Requested' AND status = 'linked' AND email = ?", lead) == 1
	})
	waitFor(t, 30*time.Second, "the lead enriched with the rule's company", func() bool {
		return count("SELECT count() FROM leads WHERE tenant = 'dev' AND email = ? AND company = 'Acme visitor-2'", lead) == 1
	})

	row = queueRow("Form Submitted")
	if row["latest_rule_id"] != "demo-requested" || row["latest_mapped_name"] != "Demo Requested" || fmt.Sprint(row["mapped"]) != "1" {
		t.Errorf("queue row after the rule: rule %v name %v mapped %v", row["latest_rule_id"], row["latest_mapped_name"], row["mapped"])
	}
}
