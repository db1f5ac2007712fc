package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
)

// queryFixture loads, through Kafka and the sink, a small tenant history relative to now and returns the env.
// acme: a1 viewed /pricing/42 while anonymous (cold, then rehydrated to ann as version 2), submitted the demo form
// (mapped by rule r-demo, delivered twice) and identified as ann; a2 viewed /docs/7 and, three days ago, /docs/8;
// a3 viewed /pricing/43. Tenant other has one signal that must never show.
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
	s1v2 := s1
	s1v2.Version, s1v2.Status, s1v2.Email = 2, schemas.StatusLinked, "ann@acme.test"
	s2 := mk("s2", "track", "Form Submitted", "a1", "ann@acme.test", "", 20*time.Minute)
	s2.RuleID, s2.MappedName, s2.Mapped = "r-demo", "Demo Requested", map[string]string{"title": "CTO"}
	s3 := mk("s3", "identify", "identify", "a1", "ann@acme.test", "", 10*time.Minute)
	s3.Traits = `{"name":"Ann","company":"Acme"}`
	s4 := mk("s4", "page", "Docs", "a2", "", "https://acme.test/docs/7", 5*time.Minute)
	s5 := mk("s5", "page", "Docs", "a2", "", "https://acme.test/docs/8", 72*time.Hour)
	s6 := mk("s6", "page", "Pricing", "a3", "", "https://acme.test/pricing/43?utm=x", 2*time.Minute)
	foreign := mk("x1", "page", "Pricing", "z", "", "https://other.test/pricing/1", time.Minute)
	foreign.Tenant = "other"
	var recs []*kgo.Record
	for _, s := range []schemas.Signal{s1, s2, s3, s4, s5, s6, foreign, s1v2, s2} {
		recs = append(recs, e.signalRecord(s))
	}
	e.produce(recs...)
	e.waitCount(uint64(len(recs)), 30*time.Second, "SELECT count() FROM signals")
	return e
}

func runQuery(t *testing.T, e *env, name string, params map[string]string) []map[string]any {
	t.Helper()
	q, err := sink.QueryByName(name)
	if err != nil {
		t.Fatal(err)
	}
	res, err := q.Run(context.Background(), e.ch.Conn, params)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res.Maps()
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
			"identify/identify":    {1, 1, 0, ""},
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
	})

	t.Run("cold_visitors", func(t *testing.T) {
		tested["cold_visitors"] = true
		rows := runQuery(t, e, "cold_visitors", with("limit", "100"))
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s:%d", r["visitor"], r["signals"]))
		}
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
		// s1 (two versions), s2 (delivered twice), s3, s4, s6: five distinct signals in the last hour.
		if len(rows) != 5 || total != 5 {
			t.Errorf("volume = %v rows, %d signals, want 5 and 5: %v", len(rows), total, rows)
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
