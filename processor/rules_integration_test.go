package processor

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/processor/rules"
	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// publish applies rules from YAML (or deletes a rule when del is "tenant/id") on the test's rules topic.
func publish(t *testing.T, k *testenv.Kafka, yaml string) {
	t.Helper()
	rs, err := rules.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("parsing rules: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rules.NewPublisher(k.Client(), k.Topic(schemas.TopicRules)).Apply(ctx, rs...); err != nil {
		t.Fatalf("applying rules: %v", err)
	}
}

// waitRule waits until every processor has (want) or no longer has (!want) the rule in effect.
func waitRule(t *testing.T, tenant, id string, want bool, ps ...*running) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range ps {
		for {
			_, ok := r.p.Rules().Rule(tenant, id)
			if ok == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rule %s/%s in effect = %v, want %v", tenant, id, ok, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// demoForms returns n demo-form track events of distinct visitors named prefix0..prefixN-1.
func demoForms(prefix string, n int) []rawIn {
	var ins []rawIn
	for i := range n {
		ins = append(ins, rawIn{"acme", track(fmt.Sprintf("%s%d", prefix, i), "", "Form Submitted",
			`,"properties":{"form_name":"demo","work_email":"`+fmt.Sprintf("%s%d", prefix, i)+`@x.io"}`)})
	}
	return ins
}

// signalsOf returns the signals whose anonymousId starts with prefix.
func signalsOf(all []schemas.Signal, prefix string) []schemas.Signal {
	var out []schemas.Signal
	for _, s := range all {
		if strings.HasPrefix(s.AnonymousID, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// A rule applied while two instances of one group run is in effect on both without a restart (events of every
// partition come out mapped), and a deleted rule stops applying.
func TestRuleChangeReachesTwoInstances(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	a := startProcessor(t, k, t.TempDir(), "a", nil)
	b := startProcessor(t, k, t.TempDir(), "b", nil)

	produce(t, k, demoForms("before-", 24)...)
	got := signalsOf(readSignals(t, k, 24, 60*time.Second), "before-")
	if len(got) != 24 {
		t.Fatalf("before the rule: %d signals, want 24", len(got))
	}
	for _, s := range got {
		if s.RuleID != "" || s.Status != schemas.StatusCold {
			t.Fatalf("before the rule: %s mapped by %q, status %s", s.AnonymousID, s.RuleID, s.Status)
		}
	}

	publish(t, k, demoRule)
	waitRule(t, "acme", "demo", true, a, b)
	produce(t, k, demoForms("during-", 24)...)
	all := readSignals(t, k, 48, 60*time.Second)
	got = signalsOf(all, "during-")
	parts := map[int32]bool{}
	for _, s := range got {
		parts[s.RawPartition] = true
		if s.RuleID != "demo" || s.MappedName != "Demo Requested" || s.Status != schemas.StatusLinked ||
			s.Email != s.AnonymousID+"@x.io" {
			t.Errorf("with the rule: %s rule %q name %q status %s email %q", s.AnonymousID, s.RuleID, s.MappedName, s.Status, s.Email)
		}
	}
	if len(got) != 24 || len(parts) != 6 {
		t.Fatalf("with the rule: %d signals over %d partitions, want 24 over 6", len(got), len(parts))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rules.NewPublisher(k.Client(), k.Topic(schemas.TopicRules)).Delete(ctx, "acme", "demo"); err != nil {
		t.Fatalf("deleting the rule: %v", err)
	}
	waitRule(t, "acme", "demo", false, a, b)
	produce(t, k, demoForms("after-", 24)...)
	got = signalsOf(readSignals(t, k, 72, 60*time.Second), "after-")
	if len(got) != 24 {
		t.Fatalf("after the delete: %d signals, want 24", len(got))
	}
	for _, s := range got {
		if s.RuleID != "" || s.MappedName != "" || s.Status != schemas.StatusCold {
			t.Errorf("after the delete: %s mapped by %q, status %s", s.AnonymousID, s.RuleID, s.Status)
		}
	}
	// Both instances processed input, so both applied (and dropped) the rule.
	for name, r := range map[string]*running{"a": a, "b": b} {
		if n := counterValue(t, r.reg, "signalstage_processor_records_total", map[string]string{"topic": "raw"}); n == 0 {
			t.Errorf("instance %s processed no raw records: the group did not split the work", name)
		}
	}
}

// A rule set of catastrophic regexes over 4 KB values cannot stall the processor: every event comes out, the
// regex budget metric counts the skipped conditions, and a cheap rule still maps.
func TestCatastrophicRegexDoesNotStall(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "- {tenant: acme, id: evil-%02d, priority: 10, match: {conditions: [{path: properties.v, op: regex, value: '[a-z]{0,240}%d'}]}, signal: Evil}\n", i, i)
	}
	b.WriteString("- {tenant: acme, id: plain, priority: 1, match: {conditions: [{path: properties.v, op: prefix, value: aaa}]}, signal: Plain}\n")
	publish(t, k, b.String())
	r := startProcessor(t, k, t.TempDir(), "p", nil)
	waitRule(t, "acme", "plain", true, r)
	before := counterValue(t, r.reg, "signalstage_processor_rules_regex_budget_exhausted_total", nil)
	const n = 300
	var ins []rawIn
	long := strings.Repeat("a", 4096)
	for i := range n {
		ins = append(ins, rawIn{"acme", track(fmt.Sprintf("v%d", i), "", "Typed", `,"properties":{"v":"`+long+`"}`)})
	}
	produce(t, k, ins...)
	got := readSignals(t, k, n, 60*time.Second)
	if len(got) != n {
		t.Fatalf("%d signals, want %d", len(got), n)
	}
	for _, s := range got {
		if s.RuleID != "plain" {
			t.Fatalf("signal of %s mapped by %q, want the plain rule", s.AnonymousID, s.RuleID)
		}
	}
	after := counterValue(t, r.reg, "signalstage_processor_rules_regex_budget_exhausted_total", nil)
	if after-before < n*50 {
		t.Errorf("regex budget exhausted %v times, want at least %d", after-before, n*50)
	}
}

// A replay of signals.raw re-maps old signals under the rules in effect now: the new versions carry the rule.
func TestReplayRemapsUnderTodaysRules(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	produce(t, k, demoForms("v", 30)...)
	dir := t.TempDir()
	r := startProcessor(t, k, dir, "p", nil)
	first := settle(t, k, 30, 2*time.Second)
	if len(first) != 30 {
		t.Fatalf("first run: %d signals, want 30", len(first))
	}
	for _, s := range first {
		if s.RuleID != "" {
			t.Fatalf("first run: mapped by %q before any rule", s.RuleID)
		}
	}
	r.stop(t)
	publish(t, k, demoRule)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 20 { // the group may still show the stopped member for a moment
		if _, err = Replay(ctx, ReplayConfig{Brokers: k.Brokers, Topics: k.Topics, UseOffset: true}); err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	startProcessor(t, k, dir, "p", nil)
	all := settle(t, k, 60, 2*time.Second)
	latest := map[string]schemas.Signal{}
	for _, s := range all {
		if s.Version > latest[s.SignalID].Version {
			latest[s.SignalID] = s
		}
	}
	if len(latest) != 30 {
		t.Fatalf("%d distinct signals, want 30", len(latest))
	}
	for _, s := range latest {
		if versionCount(s.Version) != 2 || s.RuleID != "demo" || s.MappedName != "Demo Requested" || s.Email != s.AnonymousID+"@x.io" {
			t.Errorf("after replay: %s version %d rule %q name %q email %q", s.AnonymousID, s.Version, s.RuleID, s.MappedName, s.Email)
		}
	}
}

// The rules HTTP API is mounted on the admin listener only with an admin token, and then needs it.
func TestRulesAPIOnAdminListener(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	get := func(addr, token string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+rules.APIPrefix+"?tenant=acme", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET rules: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	addrOf := func(r *running) string {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a, err := r.p.AdminAddr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	open := startProcessor(t, k, t.TempDir(), "open", func(c *Config) { c.AdminAddr = "127.0.0.1:0" })
	if code := get(addrOf(open), ""); code != http.StatusNotFound {
		t.Errorf("without an admin token: GET rules = %d, want 404 (API not mounted)", code)
	}
	// Profiles are there for a loopback peer with or without a token (schemas/pprofhttp covers the guard).
	if resp, err := http.Get("http://" + addrOf(open) + "/debug/pprof/cmdline"); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /debug/pprof/cmdline on the admin listener = %d, want 200", resp.StatusCode)
		}
	}
	open.stop(t)
	secured := startProcessor(t, k, t.TempDir(), "secured", func(c *Config) { c.AdminAddr, c.AdminToken = "127.0.0.1:0", "s3cret" })
	addr := addrOf(secured)
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {"s3cret", http.StatusOK}} {
		if code := get(addr, tc.token); code != tc.want {
			t.Errorf("token %q: GET rules = %d, want %d", tc.token, code, tc.want)
		}
	}
}
