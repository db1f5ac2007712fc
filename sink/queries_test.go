package sink_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
)

// queryFixture loads, through Kafka and the sink, a small tenant history relative to now and returns the env.
// acme: a1 viewed /pricing/42 from a google campaign while anonymous (cold, then rehydrated to ann as version 2),
// submitted the demo form (mapped by rule r-demo, delivered twice) and identified as ann; a2 viewed /docs/7 and,
// three days ago, /docs/8; a3 viewed /pricing/43. a4 viewed /pricing/44 from a newsletter 40 days ago and started a
// signup 39 days ago, both held cold until the hold expired, and identified as carl an hour ago: its old signals
// stay cold, its identity link says whose they are. n1 is a cold signal without any visitor id. Tenant other has
// one signal that must never show.
func queryFixture(t *testing.T) *env {
	e := newEnv(t)
	e.start(e.config())
	now := time.Now().UTC().Truncate(time.Second)
	mk := func(id, typ, event, anon, email, url string, ago time.Duration) schemas.Signal {
		s := signal("acme", 0)
		s.SignalID, s.Type, s.Event, s.AnonymousID, s.URL, s.PageName = id, typ, event, anon, url, event
		s.EventTime, s.ReceivedAt, s.ProcessedAt = now.Add(-ago), now.Add(-ago), now.Add(-ago)
		s.Payload = []byte(fmt.Sprintf(`{"type":%q,"n":%q}`, typ, id))
		if email != "" {
			s.Status, s.Email = schemas.StatusLinked, email
		}
		return s
	}
	s1 := mk("s1", "page", "Pricing", "a1", "", "https://acme.test/pricing/42", 30*time.Minute)
	s1.PagePath, s1.UTMSource, s1.UTMMedium, s1.UTMCampaign = "/pricing/42", "google", "cpc", "spring"
	s1v2 := s1
	s1v2.Version, s1v2.Status, s1v2.Email = 2, schemas.StatusLinked, "ann@acme.test"
	s2 := mk("s2", "track", "Form Submitted", "a1", "ann@acme.test", "", 20*time.Minute)
	s2.RuleID, s2.MappedName, s2.Mapped = "r-demo", "Demo Requested", map[string]string{"title": "CTO"}
	s3 := mk("s3", "identify", "identify", "a1", "ann@acme.test", "", 10*time.Minute)
	s3.Traits = `{"name":"Ann","company":"Acme"}`
	s4 := mk("s4", "page", "Docs", "a2", "", "https://acme.test/docs/7", 5*time.Minute)
	s5 := mk("s5", "page", "Docs", "a2", "", "https://acme.test/docs/8", 72*time.Hour)
	s6 := mk("s6", "page", "Pricing", "a3", "", "https://acme.test/pricing/43?utm=x", 2*time.Minute)
	e1 := mk("e1", "page", "Pricing", "a4", "", "https://acme.test/pricing/44", 40*24*time.Hour)
	e1.UTMSource, e1.UTMCampaign, e1.Referrer = "newsletter", "november", "https://mail.test/"
	e2 := mk("e2", "track", "Signup Started", "a4", "", "", 39*24*time.Hour)
	c1 := mk("c1", "identify", "identify", "a4", "carl@acme.test", "", 50*time.Minute)
	n1 := mk("n1", "track", "Ping", "", "", "", time.Minute)
	foreign := mk("x1", "page", "Pricing", "z", "", "https://other.test/pricing/1", time.Minute)
	foreign.Tenant = "other"
	var recs []*kgo.Record
	for _, s := range []schemas.Signal{s1, s2, s3, s4, s5, s6, e1, e2, c1, n1, foreign, s1v2, s2} {
		recs = append(recs, e.signalRecord(s))
	}
	for _, l := range []schemas.IdentityLink{
		{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1", Email: "ann@acme.test", AnonymousID: "a1", LinkedAt: now.Add(-10 * time.Minute), SignalID: "s3"},
		{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a4", Email: "carl@acme.test", AnonymousID: "a4", LinkedAt: now.Add(-50 * time.Minute), SignalID: "c1"},
	} {
		recs = append(recs, e.identityRecord(l))
	}
	e.produce(recs...)
	e.waitCount(uint64(len(recs)-2), 30*time.Second, "SELECT count() FROM signals")
	e.waitCount(2, 30*time.Second, "SELECT count() FROM identities")
	// The linked deliveries (s1v2, s2 twice, s3, c1): an insert's materialized views finish after its rows show
	// in signals.
	e.waitCount(5, 30*time.Second, "SELECT count() FROM lead_signals")
	e.waitCount(11, 30*time.Second, "SELECT uniqExactMerge(signals) FROM signal_volume_minute")
	return e
}

// runQuery runs the named query with params, with predicate push-down off (18.16's default) and on (testenv's and
// deploy's profiles), fails the test if the two answers differ, and returns the rows.
func runQuery(t *testing.T, e *env, name string, params map[string]string) []map[string]any {
	t.Helper()
	q, err := sink.QueryByName(name)
	if err != nil {
		t.Fatal(err)
	}
	var out [2][]map[string]any
	for i := range out {
		ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{
			"enable_optimize_predicate_expression": i}))
		res, err := q.Run(ctx, e.ch.Conn, params)
		if err != nil {
			t.Fatalf("%s (enable_optimize_predicate_expression=%d): %v", name, i, err)
		}
		out[i] = res.Maps()
	}
	if !reflect.DeepEqual(out[0], out[1]) {
		t.Errorf("%s %v: push-down off and on differ:\n%v\n%v", name, params, out[0], out[1])
	}
	return out[1]
}

// TestQueries runs every analyst query of sink/queries on the 18.16 server against data loaded by the sink.
func TestQueries(t *testing.T) {
	e := queryFixture(t)
	all, err := sink.Queries()
	if err != nil {
		t.Fatal(err)
	}
	tested := map[string]bool{}
	acme := map[string]string{"tenant": "acme"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"tenant": "acme"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	t.Run("signal_queue", func(t *testing.T) {
		tested["signal_queue"] = true
		rows := runQuery(t, e, "signal_queue", acme)
		type q struct {
			h24, d7 uint64
			mapped  uint8
			rule    string
		}
		got := map[string]q{}
		for _, r := range rows {
			got[r["type"].(string)+"/"+r["event"].(string)] = q{r["signals_24h"].(uint64), r["signals_7d"].(uint64),
				r["mapped"].(uint8), r["latest_rule_id"].(string)}
			if r["first_seen"].(time.Time).After(r["last_seen"].(time.Time)) {
				t.Errorf("%v: first_seen after last_seen", r)
			}
			if r["sample_payload"].(string) == "" {
				t.Errorf("%v: no sample payload", r)
			}
		}
		want := map[string]q{
			"page/Pricing":         {2, 2, 0, ""},
			"page/Docs":            {1, 2, 0, ""},
			"track/Form Submitted": {1, 1, 1, "r-demo"},
			"identify/identify":    {2, 2, 0, ""},
			"track/Ping":           {1, 1, 0, ""},
		}
		if len(got) != len(want) {
			t.Errorf("queue = %v, want %v", got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("queue %s = %+v, want %+v", k, got[k], w)
			}
		}
	})

	t.Run("lead_timeline", func(t *testing.T) {
		tested["lead_timeline"] = true
		rows := runQuery(t, e, "lead_timeline", with("email", "ann@acme.test"))
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s v%d r%d", r["signal_id"], r["version"], r["rehydrated"]))
		}
		want := "[s1 v2 r1 s2 v1 r0 s3 v1 r0]"
		if fmt.Sprint(got) != want {
			t.Errorf("timeline = %v, want %s", got, want)
		}
		// carl's anonymous history whose hold expired before he identified: cold rows, linked by his identity.
		got = nil
		for _, r := range runQuery(t, e, "lead_timeline", with("email", "carl@acme.test")) {
			got = append(got, fmt.Sprintf("%s linked=%d", r["signal_id"], r["linked"]))
		}
		if want := "[e1 linked=0 e2 linked=0 c1 linked=1]"; fmt.Sprint(got) != want {
			t.Errorf("carl's timeline = %v, want %s", got, want)
		}
	})

	t.Run("cold_visitors", func(t *testing.T) {
		tested["cold_visitors"] = true
		rows := runQuery(t, e, "cold_visitors", with("limit", "100"))
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s:%d", r["visitor"], r["signals"]))
		}
		// a4 (identified as carl after its hold expired) is not cold any more; n1 has no visitor id.
		if want := "[a3:1 a2:2]"; fmt.Sprint(got) != want {
			t.Errorf("cold visitors = %v, want %s", got, want)
		}
	})

	t.Run("top_pages", func(t *testing.T) {
		tested["top_pages"] = true
		for _, tc := range []struct{ like, want string }{
			{"%", "[/docs/:id:2:1 /pricing/:id:2:2]"},
			{"/pricing/%", "[/pricing/:id:2:2]"},
			{"/nothing/%", "[]"},
		} {
			rows := runQuery(t, e, "top_pages", with("days", "7", "path_like", tc.like))
			got := []string{}
			for _, r := range rows {
				got = append(got, fmt.Sprintf("%s:%d:%d", r["pattern"], r["views"], r["visitors"]))
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("top pages like %q = %v, want %s", tc.like, got, tc.want)
			}
		}
	})

	t.Run("volume_per_minute", func(t *testing.T) {
		tested["volume_per_minute"] = true
		rows := runQuery(t, e, "volume_per_minute", with("minutes", "60"))
		var total uint64
		for _, r := range rows {
			total += r["signals"].(uint64)
		}
		// s1 (two versions), s2 (delivered twice), s3, s4, s6, c1, n1: seven distinct signals in the last hour.
		if len(rows) != 7 || total != 7 {
			t.Errorf("volume = %v rows, %d signals, want 7 and 7: %v", len(rows), total, rows)
		}
	})

	t.Run("lead_rollup", func(t *testing.T) {
		tested["lead_rollup"] = true
		for _, tc := range []struct{ email, want string }{
			// s1 counted once although loaded cold and linked, s2 once although delivered twice.
			{"ann@acme.test", "3 7d=3 30d=3 anon=0 [identify page track] [1 1 1] [1 1 1]"},
			// carl's 40 and 39 days old anonymous history counts in all, not in 7 or 30 days.
			{"carl@acme.test", "3 7d=1 30d=1 anon=2 [identify page track] [1 0 0] [1 0 0]"},
			{"nobody@acme.test", "[]"},
		} {
			rows := runQuery(t, e, "lead_rollup", with("email", tc.email))
			got := "[]"
			if len(rows) == 1 {
				r := rows[0]
				got = fmt.Sprintf("%d 7d=%d 30d=%d anon=%d %v %v %v", r["signals"], r["signals_7d"], r["signals_30d"],
					r["anonymous_signals"], r["types"], r["types_7d"], r["types_30d"])
				if first, last := r["first_seen"].(time.Time), r["last_seen"].(time.Time); first.After(last) {
					t.Errorf("%s: first_seen %v after last_seen %v", tc.email, first, last)
				}
			}
			if got != tc.want {
				t.Errorf("rollup of %s = %s, want %s", tc.email, got, tc.want)
			}
		}
	})

	t.Run("lead_first_touch", func(t *testing.T) {
		tested["lead_first_touch"] = true
		for _, tc := range []struct{ email, want string }{
			// ann's first signal is s1, made anonymous and rehydrated: its campaign is her first touch.
			{"ann@acme.test", "s1 linked=1 /pricing/42 google/cpc/spring  campaign=google"},
			// carl's is his expired anonymous history: the newsletter visit.
			{"carl@acme.test", "e1 linked=0 /pricing/44 newsletter//november https://mail.test/ campaign=newsletter"},
		} {
			rows := runQuery(t, e, "lead_first_touch", with("email", tc.email))
			if len(rows) != 1 {
				t.Fatalf("first touch of %s: %d rows, want 1", tc.email, len(rows))
			}
			r := rows[0]
			got := fmt.Sprintf("%s linked=%d %s %s/%s/%s %s campaign=%s", r["first_signal_id"], r["first_linked"],
				r["landing_page"], r["first_utm_source"], r["first_utm_medium"], r["first_utm_campaign"],
				r["first_referrer"], r["first_campaign_source"])
			if got != tc.want {
				t.Errorf("first touch of %s = %s, want %s", tc.email, got, tc.want)
			}
		}
	})

	t.Run("lead_intent", func(t *testing.T) {
		tested["lead_intent"] = true
		for _, tc := range []struct{ days, like, want string }{
			// a3's visit to /pricing/43 is no lead's (never identified); carl's is from his anonymous history.
			{"60", "/pricing%", "[ann@acme.test:1:0 carl@acme.test:1:1]"},
			{"7", "/pricing%", "[ann@acme.test:1:0]"},
			{"60", "/docs%", "[]"},
		} {
			got := []string{}
			for _, r := range runQuery(t, e, "lead_intent", with("days", tc.days, "path_like", tc.like)) {
				got = append(got, fmt.Sprintf("%s:%d:%d", r["email"], r["visits"], r["anonymous_visits"]))
			}
			if fmt.Sprint(got) != tc.want {
				t.Errorf("intent %s days %q = %v, want %s", tc.days, tc.like, got, tc.want)
			}
		}
	})

	t.Run("parameters", func(t *testing.T) {
		q, _ := sink.QueryByName("lead_timeline")
		if _, err := q.Render(acme); !errors.Is(err, sink.ErrParam) {
			t.Errorf("missing email: %v, want ErrParam", err)
		}
		// A quote in a value stays inside the literal.
		rows := runQuery(t, e, "lead_timeline", with("email", `x' OR '1'='1`))
		if len(rows) != 0 {
			t.Errorf("injection returned %d rows", len(rows))
		}
		q, _ = sink.QueryByName("cold_visitors")
		if _, err := q.Render(with("limit", "1; DROP TABLE signals")); !errors.Is(err, sink.ErrParam) {
			t.Errorf("non-numeric limit: %v, want ErrParam", err)
		}
	})

	for _, q := range all {
		if !tested[q.Name] {
			t.Errorf("query %s has no test", q.Name)
		}
	}
}
