package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestReplayAfterTheWindowReachesClickHouse: the binaries, the real Kafka and ClickHouse. A visitor's page view is
// held cold, then linked by an identify (ClickHouse keeps version 2 of it); the dedup window (5 s here) passes;
// a mapping rule for the page is applied; `processor replay` from offset 0, and the processor restarts (on an
// empty disk: it restores from the changelog). The replay re-emits the page under the rule; ClickHouse's row
// (FINAL, the highest version) is the replay's, with the rule. Before versions were a clock, the replay emitted
// version 1, which lost against the stored version 2: the rule never showed.
func TestReplayAfterTheWindowReachesClickHouse(t *testing.T) {
	k, ch := NewKafka(t, 3), NewClickHouse(t)
	bin := buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3"}
	ingestAddr := freeAddr(t)
	startStage(t, bin, "sink", append(common, "-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database,
		"-metrics-addr", freeAddr(t))...)
	processorArgs := func() []string {
		return append(common, "-state-dir", t.TempDir(), "-admin-addr", freeAddr(t), "-dedup-window", "5s")
	}
	proc := startStage(t, bin, "processor", processorArgs()...)
	startStage(t, bin, "ingest", append(common, "-addr", ingestAddr, "-keys", keys)...)
	base := "http://" + ingestAddr
	waitFor(t, 60*time.Second, "ingest /readyz", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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
	binary := func(name string, args ...string) {
		t.Helper()
		var errb bytes.Buffer
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
		}
	}
	type row struct {
		version         uint64
		status, ruleID  string
		email, signalID string
	}
	msg := fmt.Sprintf("page-%d", time.Now().UnixNano())
	latest := func() (row, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var r row
		err := ch.Conn.QueryRow(ctx, "SELECT version, status, rule_id, email, signal_id FROM signals FINAL WHERE message_id = ?", msg).
			Scan(&r.version, &r.status, &r.ruleID, &r.email, &r.signalID)
		return r, err == nil
	}

	post(fmt.Sprintf(`{"type":"page","anonymousId":"replayed","messageId":%q,"properties":{"name":"Pricing"}}`, msg))
	post(`{"type":"identify","anonymousId":"replayed","messageId":"` + msg + `-id","traits":{"email":"r@x.io"}}`)
	var linked row
	waitFor(t, 90*time.Second, "the page linked in ClickHouse", func() bool {
		r, ok := latest()
		linked = r
		return ok && r.status == "linked"
	})
	time.Sleep(6 * time.Second) // past the dedup window

	rule := filepath.Join(t.TempDir(), "rule.yaml")
	if err := os.WriteFile(rule, []byte("tenant: dev\nid: pricing\nmatch:\n  type: page\n  event: Pricing\nsignal: Pricing Viewed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	binary("processor", append(append([]string{"rules"}, common...), "apply", rule)...)
	_ = proc.cmd.Process.Signal(os.Interrupt)
	_, _ = proc.cmd.Process.Wait()
	waitFor(t, 60*time.Second, "the replay (the group empties once the stopped member's session ends)", func() bool {
		cmd := exec.Command(filepath.Join(bin, "processor"), append([]string{"replay"}, append(common, "-from", "0")...)...)
		return cmd.Run() == nil
	})
	startStage(t, bin, "processor", processorArgs()...)

	var replayed row
	waitFor(t, 120*time.Second, "the replay's row in ClickHouse", func() bool {
		r, ok := latest()
		replayed = r
		return ok && r.version > linked.version
	})
	if replayed.signalID != linked.signalID || replayed.ruleID != "pricing" || replayed.status != "linked" || replayed.email != "r@x.io" {
		t.Fatalf("after the replay ClickHouse keeps %+v, want the linked row under the rule (before: %+v)", replayed, linked)
	}
}
