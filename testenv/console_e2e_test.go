package testenv

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestConsoleBrowser is issue 19's acceptance case: the real binaries (the sink serving the console) against the
// real Kafka and ClickHouse, driven in Debian's headless Chromium. The one-time login link lands on the Signal
// Queue; an event sent to ingest shows in the live tail and then in the queue; a rule drafted from its row (the
// sample's paths pre-filled by processor/rules' Suggest) is refused at its field when invalid, then applied
// through the rules publisher; new events of that name then show the row as mapped and their lead enriched by
// the rule (lead page). A poison record's dead
// letter is previewed (dry run) and redriven through sink.Redrive. Every page's screenshot is
// written to the test's artifact directory (go test -artifacts keeps them) and the page's text checked.
func TestConsoleBrowser(t *testing.T) {
	chromium := ChromiumPath()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium missing (%s): the console's browser test needs Debian's chromium", chromium)
	}
	consoleAddr := freeAddr(t)
	const token, code = "console-e2e-admin-token", "console-e2e-one-time-code"
	sinkMetrics, processorAdmin := freeAddr(t), freeAddr(t)
	// The token is a secret: a file (or the environment), never a flag's value.
	tokenFile := filepath.Join(t.TempDir(), "console-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startPipelineWith(t, []string{"-console-addr", consoleAddr, "-console-token-file", tokenFile, "-console-login-code", code,
		"-metrics-addr", sinkMetrics, "-console-metrics", "sink=http://" + sinkMetrics + "/metrics,processor=http://" + processorAdmin + "/metrics"},
		[]string{"-admin-addr", processorAdmin})
	base := "http://" + consoleAddr
	waitFor(t, 30*time.Second, "the console's login page", func() bool {
		resp, err := http.Get(base + "/login")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	run := time.Now().UnixNano()
	event := fmt.Sprintf("Console Demo %d", run%1_000_000)
	sent := 0
	post := func() {
		t.Helper()
		sent++
		body := fmt.Sprintf(`{"type":"track","event":%q,"anonymousId":"console-visitor-%d","messageId":"console-%d-%d",`+
			`"properties":{"form_name":"demo","email":"ann-%d@example.com","company":"Acme"}}`, event, sent, run, sent, sent)
		resp, err := http.Post(p.base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting: %d %s", resp.StatusCode, b)
		}
	}

	userData := t.TempDir()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.UserDataDir(userData), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		// No name resolution: the console is an IP literal, so any CDN the pages tried would fail and show below.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	var mu sync.Mutex
	var requested []string
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return s
	}
	// bodyText is the page's text, "" while a navigation has no body yet.
	bodyText := func() string {
		ctx, cancel := context.WithTimeout(bctx, 20*time.Second)
		defer cancel()
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
		return s
	}
	waitText := func(what, text string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(bodyText(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the page never showed %q; it shows:\n%s", what, text, bodyText())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	out := t.ArtifactDir()
	shot := func(name string, want ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if _, err := png.Decode(bytes.NewReader(img)); err != nil {
			t.Fatalf("screenshot %s is not a PNG: %v", name, err)
		}
		file := filepath.Join(out, name+".png")
		if err := os.WriteFile(file, img, 0o644); err != nil {
			t.Fatal(err)
		}
		// Every control has a label (a <label for>, wrapping label or aria-label); buttons and links have text.
		unlabeled := eval(`Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a'))
			.filter(function (el) {
				if (el.tagName === 'A' || el.tagName === 'BUTTON') return !el.textContent.trim() && !el.getAttribute('aria-label');
				return !(el.labels && el.labels.length) && !el.getAttribute('aria-label');
			}).map(function (el) { return el.outerHTML.slice(0, 120); }).join('\n')`)
		if unlabeled != "" {
			t.Errorf("page %s has controls without a label:\n%s", name, unlabeled)
		}
		text := bodyText()
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("page %s (%s) does not show %q; it shows:\n%s", name, file, w, text)
			}
		}
		t.Logf("screenshot %s", file)
	}
	queueURL := func(extra string) string {
		return base + "/queue?tenant=dev&q=" + strings.ReplaceAll(event, " ", "+") + extra
	}

	// The one-time link logs in and lands on the Signal Queue; it does not work twice.
	do("opening the one-time login link", chromedp.Navigate(base+"/login/once?code="+code))
	if loc := eval("location.pathname"); loc != "/queue" {
		t.Fatalf("the login link landed on %s, want /queue", loc)
	}
	shot("01-queue-after-login", "Signal Queue", "Live tail", "Log out")
	if resp, err := http.Get(base + "/login/once?code=" + code); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the one-time link a second time: %v %v, want 401", resp.StatusCode, err)
	}

	// Live tail: connected, then an event sent now shows up.
	do("opening the live tail", chromedp.Navigate(base+"/tail?tenant=dev&event="+strings.ReplaceAll(event, " ", "+")))
	waitText("the tail connects", "connected: waiting for signals")
	post()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(eval("document.getElementById('tail-rows').innerText"), event) {
		if time.Now().After(deadline) {
			t.Fatalf("the live tail never showed %q", event)
		}
		time.Sleep(300 * time.Millisecond)
	}
	shot("02-live-tail", event, "segment", "track", "1 signal since the page opened")

	// The queue shows the event (once the sink has loaded it). The first time the filter is typed and submitted
	// with the keyboard (Enter in the filter box).
	do("opening the queue", chromedp.Navigate(base+"/queue?tenant=dev"))
	do("filtering with the keyboard", chromedp.SendKeys(chromedp.CSS("#q"), event+"\r"))
	// The old page satisfies any text check until the navigation lands: wait for the URL instead.
	deadline = time.Now().Add(20 * time.Second)
	for eval("new URLSearchParams(location.search).get('q') || ''") != event {
		if time.Now().After(deadline) {
			t.Fatalf("Enter in the filter box did not submit q=%q (at %s)", event, eval("location.href"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		do("opening the queue", chromedp.Navigate(queueURL("")))
		if eval("(document.querySelector('tr[data-event] td.event')||{}).innerText||''") == event {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue never showed %q:\n%s", event, bodyText())
		}
		time.Sleep(time.Second)
	}
	shot("03-queue", event, "not mapped", "payload", "Draft rule")

	// Draft a rule from the row: the form is pre-filled from the sample.
	do("drafting a rule", chromedp.Click(chromedp.CSS("tr[data-event] a.button")))
	waitText("the draft form", "Draft a mapping rule")
	if got := eval("document.getElementById('event').value"); got != event {
		t.Errorf("draft's event = %q, want %q", got, event)
	}
	if got := eval("document.getElementById('map_email').value"); got != "properties.email" {
		t.Errorf("draft maps email from %q, want properties.email", got)
	}
	if got := eval("document.getElementById('cond_path_0').value + '=' + document.getElementById('cond_value_0').value"); got != "properties.form_name=demo" {
		t.Errorf("draft's first condition = %q, want properties.form_name=demo", got)
	}
	shot("04-draft", "Draft a mapping rule", "properties.email", "Apply rule")

	// An invalid id is refused at its field; nothing is published.
	do("applying an invalid rule", chromedp.SetValue(chromedp.CSS("#id"), "bad id!"),
		chromedp.Click(chromedp.CSS("form.rule button[type=submit]")))
	waitText("the validation error", "The rule is not valid")
	if got := eval("(document.getElementById('id_err')||{}).innerText||''"); !strings.Contains(got, "use letters, digits") {
		t.Errorf("the id's error at its field = %q", got)
	}
	if got := eval("document.getElementById('id').getAttribute('aria-invalid')||''"); got != "true" {
		t.Errorf("the id input is not marked aria-invalid")
	}
	shot("05-draft-invalid", "The rule is not valid", "use letters, digits")

	// Fixed and applied: back on the queue with a notice.
	do("applying the rule", chromedp.SetValue(chromedp.CSS("#id"), "console-demo"),
		chromedp.SetValue(chromedp.CSS("#signal"), "Console Demo Requested"),
		chromedp.Click(chromedp.CSS("form.rule button[type=submit]")))
	waitText("the applied notice", "Rule console-demo applied")
	shot("06-rule-applied", "Rule console-demo applied")

	// New events of that name are mapped by the processor: the row shows mapped.
	deadline = time.Now().Add(120 * time.Second)
	for {
		post()
		time.Sleep(2 * time.Second)
		do("opening the mapped queue", chromedp.Navigate(queueURL("&mapped=yes")))
		if strings.Contains(eval("(document.querySelector('tr[data-event] td.mapped')||{}).innerText||''"), "console-demo") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue row never showed mapped:\n%s", bodyText())
		}
	}
	shot("07-queue-mapped", event, "mapped", "console-demo → Console Demo Requested")

	// The lead of the last event is enriched by the rule (company from properties.company: no trait carries it).
	lead := fmt.Sprintf("ann-%d@example.com", sent)
	deadline = time.Now().Add(90 * time.Second)
	for {
		do("opening the lead", chromedp.Navigate(base+"/lead?tenant=dev&email="+lead))
		if strings.Contains(eval("(document.querySelector('table.lead-kv')||{}).innerText||''"), "company=Acme") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lead page never showed %s enriched with company=Acme:\n%s", lead, bodyText())
		}
		time.Sleep(time.Second)
	}
	shot("08-lead", lead, "Enrichment", "Acme", "First touch", "Timeline", "Console Demo Requested")

	// The rules page lists the rule (read back from signals.rules); Edit opens it in the form.
	do("opening the rules", chromedp.Navigate(base+"/rules?tenant=dev"))
	waitText("the rules list", "console-demo")
	shot("09-rules", "Mapping rules", "console-demo", "Console Demo Requested", "Edit", "Delete")
	do("editing the rule", chromedp.Click(chromedp.CSS("tr[data-rule='console-demo'] a.edit")))
	waitText("the edit form", "Apply rule")
	if got := eval("document.getElementById('id').value + ' ' + document.getElementById('map_company').value"); got != "console-demo properties.company" {
		t.Errorf("edit form has id and company map %q, want console-demo properties.company", got)
	}

	// A record the processor cannot decode becomes a dead letter; the console previews its redrive (dry run:
	// nothing sent, still listed), then sends it back through sink.Redrive: it leaves the "not redriven yet"
	// selection, and fails again as a dead letter with retries 1.
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.k.Brokers...), kgo.DefaultProduceTopic(p.k.Prefix+"signals.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Key: []byte("dev|poison"), Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatalf("producing a poison record: %v", err)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		do("opening the dead letters", chromedp.Navigate(base+"/deadletters?stage=processor&reason=decoding"))
		if strings.Contains(bodyText(), "decoding RawEvent") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead letters page never showed the poison record:\n%s", bodyText())
		}
		time.Sleep(time.Second)
	}
	shot("10-dead-letters", "Dead letters", "processor", "decoding RawEvent", "Preview redrive")
	do("previewing the redrive", chromedp.Click(chromedp.CSS("#preview")))
	waitText("the redrive preview", "Would send 1")
	shot("11-redrive-preview", "Redrive preview (dry run)", "Would send 1", "Nothing was sent yet", "Redrive 1 now")
	do("redriving", chromedp.Click(chromedp.CSS("#send")))
	waitText("the redrive result", "Sent 1")
	shot("12-redrive-done", "Redrive done", "Sent 1")
	deadline = time.Now().Add(90 * time.Second)
	for {
		do("opening all dead letters", chromedp.Navigate(base+"/deadletters?stage=processor&reason=decoding&pending=0"))
		retries := eval("Array.from(document.querySelectorAll('tbody tr td.num')).map(function(td){return td.innerText}).sort().join(',')")
		if retries == "1,1" { // the original marked redriven, and its failure again
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the redrive the dead letters' retries are %q, want 1,1:\n%s", retries, bodyText())
		}
		time.Sleep(time.Second)
	}
	shot("13-dead-letters-after", "decoding RawEvent")

	// Pipeline health: both stages scraped; while events flow, the sink's inserted rows show as a rate.
	deadline = time.Now().Add(60 * time.Second)
	for {
		post()
		time.Sleep(2 * time.Second)
		do("opening the health page", chromedp.Navigate(base+"/health"))
		sinkText := eval("(document.querySelector('section[data-stage=sink]')||{}).innerText||''")
		if strings.Contains(sinkText, "signalstage_sink_rows_inserted_total") && strings.Contains(sinkText, "/s") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the health page never showed the sink's insert rate:\n%s", bodyText())
		}
	}
	shot("14-health", "Pipeline health", "processor", "sink", "signalstage_sink_lag_records", "signalstage_sink_rows_inserted_total")
	if got := eval("String(document.querySelectorAll('section.stage .error').length)"); got != "0" {
		t.Errorf("the health page shows %s scrape errors:\n%s", got, bodyText())
	}

	// Delete the rule after a confirmation: its tombstone leaves the list.
	do("opening the rules", chromedp.Navigate(base+"/rules?tenant=dev"))
	do("deleting the rule", chromedp.Click(chromedp.CSS("tr[data-rule='console-demo'] a.delete")))
	waitText("the delete confirmation", "Delete rule console-demo?")
	do("confirming", chromedp.Click(chromedp.CSS("#confirm-delete")))
	waitText("the deleted notice", "Rule console-demo deleted")
	shot("15-rule-deleted", "Rule console-demo deleted", "No rules for this tenant")

	mu.Lock()
	defer mu.Unlock()
	for _, u := range requested {
		// data: URLs are Chromium's own (the date input's calendar icon), never fetched.
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the console requested %s, outside itself (assets must be embedded)", u)
		}
	}
}
