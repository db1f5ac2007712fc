package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/sink/console"
	"github.com/signalstage/signalstage/testenv"
)

const token = "console-test-admin-token"

// start runs a console on a free port with sink config sc until the test ends.
func start(t *testing.T, sc sink.Config) *console.Server {
	t.Helper()
	srv, err := console.New(console.Config{Addr: "127.0.0.1:0", Token: token, Sink: sc,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return srv
}

// client is a browser-like client: cookies kept, redirects not followed (so each answer can be checked).
func client(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// TestAuth: pages need a session; the admin token or the one-time link (once) starts one, with an HttpOnly,
// SameSite=Strict cookie; a write without the session's CSRF token is refused; a rule that fails the
// processor's validation comes back with the error at its field and is not published. No ClickHouse or Kafka
// is reached: every step stops before a query or a produce.
func TestAuth(t *testing.T) {
	srv := start(t, sink.Config{Brokers: []string{"127.0.0.1:1"}, ClickHouseAddr: "127.0.0.1:1", Database: "none"})
	base := srv.URL()
	c := client(t)

	if resp, _ := get(t, c, base+"/queue"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("queue without a session: %d → %q, want 303 → /login", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := post(t, c, base+"/rules/apply", url.Values{"tenant": {"dev"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("write without a session: %d, want 401", resp.StatusCode)
	}
	if resp, body := post(t, c, base+"/login", url.Values{"token": {"wrong-token-wrong-token"}}); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	resp, _ := post(t, c, base+"/login", url.Values{"token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue" {
		t.Fatalf("login: %d → %q, want 303 → /queue", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || len(ck[0].Value) < 32 {
		t.Fatalf("session cookie = %+v, want one HttpOnly SameSite=Strict cookie with a long random value", ck)
	}

	// The one-time link works once, for another browser.
	other := client(t)
	if resp, _ := get(t, other, srv.LoginURL()); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/queue" {
		t.Fatalf("one-time link: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(t, client(t), srv.LoginURL()); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("one-time link used twice: %d, want 401", resp.StatusCode)
	}

	// Writes need the session's CSRF token.
	rule := url.Values{"tenant": {"dev"}, "id": {"bad id!"}, "source": {"segment"}, "type": {"track"}, "event": {"X"},
		"cond_path": {"properties..x"}, "cond_op": {"eq"}, "cond_value": {"1"}, "map_email": {"traits.email"}}
	if resp, _ := post(t, c, base+"/rules/apply", rule); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("write without the CSRF token: %d, want 403", resp.StatusCode)
	}
	rule.Set("csrf", "0123")
	if resp, _ := post(t, c, base+"/rules/apply", rule); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("write with another CSRF token: %d, want 403", resp.StatusCode)
	}
	csrf := csrfOf(t, c, base)
	rule.Set("csrf", csrf)
	resp, body := post(t, c, base+"/rules/apply", rule)
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("invalid rule: %d, want 422\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{`id="id_err"`, `use letters, digits`, `id="cond_path_0_err"`, `bad dot path`} {
		if !strings.Contains(body, want) {
			t.Errorf("invalid rule's page lacks %q", want)
		}
	}

	// A post from another origin is refused even with the token (and a login from another origin too).
	req, _ := http.NewRequest(http.MethodPost, base+"/rules/apply", strings.NewReader(rule.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin write: %v %v, want 403", resp.StatusCode, err)
	}
	req, _ = http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := client(t).Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login: %v %v, want 403", resp.StatusCode, err)
	}

	// Logging out ends the session.
	if resp, _ := post(t, c, base+"/logout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if resp, _ := get(t, c, base+"/queue"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("queue after logout: %d, want a redirect to the login", resp.StatusCode)
	}
}

// csrfOf reads the session's CSRF token from a page that needs no backend: the draft form re-rendered for an
// invalid rule carries it, but so does every logged-in page; the tail page asks ClickHouse for tenants, so the
// error page (which has the layout) is what comes back here, with the token in its logout form.
func csrfOf(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	_, body := get(t, c, base+"/tail")
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in a logged-in page:\n%s", body)
	}
	return m[1]
}

// TestQueuePage10k loads 10,000 queue rows (distinct event names) into a real ClickHouse database and renders
// the Signal Queue: the page carries the first 200 by the chosen order and says there are more; the filter and
// sort run in ClickHouse (the exact row comes back for a name, ascending order starts at the smallest). The
// render time is logged, not asserted.
func TestQueuePage10k(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := sink.Migrate(ctx, ch.Conn, ch.Database); err != nil {
		t.Fatal(err)
	}
	// Event n has n%50+1 signals a minute ago; event 7 is mapped.
	// Names zero-padded (18.16 has no leftPad) so that name order is number order.
	if err := ch.Conn.Exec(ctx, `INSERT INTO signals (tenant, signal_id, version, status, source, type, event, event_time,
		event_time_ms, received_at, processed_at, payload, rule_id, mapped_name)
		SELECT 'acme', concat('s-', toString(n), '-', toString(k)), 1, 'cold', 'segment', 'track',
			concat('Event ', substring(toString(100000 + n), 2)), now() - 60, (toUInt64(now()) - 60) * 1000, now(), now(),
			concat('{"type":"track","event":"Event ', toString(n), '","properties":{"plan":"pro"}}'),
			if(n = 7, 'r7', ''), if(n = 7, 'Seven', '')
		FROM (SELECT number AS n FROM system.numbers LIMIT 10000) ARRAY JOIN range(toUInt64(n % 50 + 1)) AS k`); err != nil {
		t.Fatalf("loading 10,000 queue rows: %v", err)
	}
	srv := start(t, sink.Config{Brokers: []string{"127.0.0.1:1"}, ClickHouseAddr: ch.Addr, Database: ch.Database})
	c := client(t)
	if resp, _ := get(t, c, srv.LoginURL()); resp.StatusCode != http.StatusSeeOther {
		t.Fatal("login failed")
	}
	rowRE := regexp.MustCompile(`<tr data-event="([^"]+)">`)
	page := func(query string) []string {
		t.Helper()
		began := time.Now()
		resp, body := get(t, c, srv.URL()+"/queue?tenant=acme"+query)
		took := time.Since(began)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("queue%s: %d\n%s", query, resp.StatusCode, body)
		}
		var evs []string
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			evs = append(evs, m[1])
		}
		t.Logf("queue%s: %d rows, %d bytes in %v", query, len(evs), len(body), took.Round(time.Millisecond))
		if len(evs) == 200 && !strings.Contains(body, "narrow the filter") {
			t.Errorf("queue%s: 200 rows shown without saying there are more", query)
		}
		return evs
	}
	evs := page("")
	if len(evs) != 200 {
		t.Fatalf("default page has %d rows, want 200", len(evs))
	}
	if evs[0] != "Event 00049" { // 50 signals, the most; ties by event name
		t.Errorf("first row by 7 d volume = %s, want Event 00049", evs[0])
	}
	if evs := page("&sort=event&dir=asc"); len(evs) == 0 || evs[0] != "Event 00000" {
		t.Errorf("ascending by event starts at %v, want Event 00000", evs[:min(1, len(evs))])
	}
	if evs := page("&q=event+09999"); len(evs) != 1 || evs[0] != "Event 09999" {
		t.Errorf("filter for one name gives %v", evs)
	}
	if evs := page("&mapped=yes"); len(evs) != 1 || evs[0] != "Event 00007" {
		t.Errorf("mapped filter gives %v, want only Event 00007", evs)
	}
	if got := fmt.Sprint(len(page("&mapped=no&sort=signals_7d&dir=asc"))); got != "200" {
		t.Errorf("unmapped page has %s rows", got)
	}
}

// TestOperatorTenants: an operator's token (stored as its SHA-256) sees only its tenants: the tenant lists leave
// the others out, a request naming another tenant is 403 (pages and writes alike), dead letters are limited to
// its tenants, and the pipeline's health (metrics name every tenant) is the admin's.
func TestOperatorTenants(t *testing.T) {
	ch := testenv.NewClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := sink.Migrate(ctx, ch.Conn, ch.Database); err != nil {
		t.Fatal(err)
	}
	// INSERT … SELECT: clickhouse-go's Exec of INSERT … VALUES hangs against 18.16 (DESIGN.md).
	for _, tenant := range []string{"acme", "other"} {
		if err := ch.Conn.Exec(ctx, fmt.Sprintf(`INSERT INTO signals (tenant, signal_id, version, status, source, type, event,
			event_time, event_time_ms, received_at, processed_at, payload)
			SELECT '%[1]s', 's-%[1]s', 1, 'cold', 'segment', 'track', 'Event of %[1]s', now(), toUInt64(now()) * 1000, now(), now(), '{}'`, tenant)); err != nil {
			t.Fatal(err)
		}
		if err := ch.Conn.Exec(ctx, fmt.Sprintf(`INSERT INTO dead_letters_v2 (tenant, stage, reason, origin_topic, origin_partition,
			origin_offset, key, payload, retries, failed_at, kafka_topic, kafka_partition, kafka_offset)
			SELECT '%[1]s', 'processor', 'reason of %[1]s', 'signals.raw', 0, 1, '%[1]s|x', 'x', 0, now(), 'signals.dlq', 0, %[2]d`,
			tenant, len(tenant))); err != nil {
			t.Fatal(err)
		}
	}
	const annToken = "ann-operator-token-0123"
	sum := sha256.Sum256([]byte(annToken))
	srv, err := console.New(console.Config{Addr: "127.0.0.1:0", Token: token,
		Operators: []console.Operator{{Name: "ann", TokenSHA256: hex.EncodeToString(sum[:]), Tenants: []string{"acme"}}},
		Sink:      sink.Config{Brokers: []string{"127.0.0.1:1"}, ClickHouseAddr: ch.Addr, Database: ch.Database},
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	defer func() { stop(); <-done }()
	base := srv.URL()

	c := client(t)
	if resp, _ := post(t, c, base+"/login", url.Values{"token": {annToken}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("operator login: %d", resp.StatusCode)
	}
	resp, body := get(t, c, base+"/queue")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Event of acme") || strings.Contains(body, `value="other"`) ||
		strings.Contains(body, "Event of other") {
		t.Fatalf("operator's queue: %d, want acme's only:\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, `href="/health"`) {
		t.Error("the operator's nav links the health page")
	}
	for _, u := range []string{"/queue?tenant=other", "/lead?tenant=other&email=a@b.c", "/rules?tenant=other",
		"/tail/stream?tenant=other", "/deadletters?tenant=other", "/health"} {
		if resp, _ := get(t, c, base+u); resp.StatusCode != http.StatusForbidden {
			t.Errorf("operator GET %s: %d, want 403", u, resp.StatusCode)
		}
	}
	_, body = get(t, c, base+"/deadletters?pending=0")
	if !strings.Contains(body, "reason of acme") || strings.Contains(body, "reason of other") {
		t.Errorf("operator's dead letters are not acme's only:\n%s", body)
	}
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no CSRF token")
	}
	for _, path := range []string{"/rules/apply", "/rules/delete", "/deadletters/redrive"} {
		if resp, _ := post(t, c, base+path, url.Values{"csrf": {m[1]}, "tenant": {"other"}, "id": {"x"}, "mode": {"preview"}}); resp.StatusCode != http.StatusForbidden {
			t.Errorf("operator POST %s for another tenant: %d, want 403", path, resp.StatusCode)
		}
	}

	// The admin sees both.
	admin := client(t)
	post(t, admin, base+"/login", url.Values{"token": {token}})
	if _, body := get(t, admin, base+"/deadletters?pending=0"); !strings.Contains(body, "reason of acme") || !strings.Contains(body, "reason of other") {
		t.Errorf("admin's dead letters lack a tenant:\n%s", body)
	}
}
