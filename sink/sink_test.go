package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// TestLoadsSignals is the walking skeleton: signals produced to signals.resolved become rows with the values they
// carried, and the offsets are committed once they are in.
func TestLoadsSignals(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	const n = 500
	var recs = make([]*kgo.Record, 0, n)
	for i := range n {
		s := signal("acme", i)
		if i == 7 {
			s.Status, s.Email, s.UserID = schemas.StatusLinked, "ann@acme.test", "u-7"
			s.RuleID, s.MappedName, s.Mapped = "r1", "Demo Requested", map[string]string{"company": "Acme", "title": "CTO"}
		}
		recs = append(recs, e.signalRecord(s))
	}
	e.produce(recs...)
	e.waitCount(n, 30*time.Second, "SELECT count() FROM signals FINAL")
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), n, 30*time.Second)

	var row struct {
		Tenant, Status, Email, UserID, RuleID, MappedName, Event, Payload string
		Keys, Values                                                      []string
		EventTime                                                         time.Time
		EventMs                                                           int64
	}
	ctx := context.Background()
	if err := e.ch.Conn.QueryRow(ctx, `SELECT tenant, status, email, user_id, rule_id, mapped_name, event, payload,
		mapped_keys, mapped_values, event_time, event_time_ms FROM signals WHERE signal_id = 'sig-00007'`).Scan(
		&row.Tenant, &row.Status, &row.Email, &row.UserID, &row.RuleID, &row.MappedName, &row.Event, &row.Payload,
		&row.Keys, &row.Values, &row.EventTime, &row.EventMs); err != nil {
		t.Fatal(err)
	}
	want := signal("acme", 7)
	if row.Tenant != "acme" || row.Status != "linked" || row.Email != "ann@acme.test" || row.UserID != "u-7" ||
		row.RuleID != "r1" || row.MappedName != "Demo Requested" || row.Event != "Clicked" || row.Payload != string(want.Payload) {
		t.Errorf("row = %+v", row)
	}
	if len(row.Keys) != 2 || row.Keys[0] != "company" || row.Values[0] != "Acme" || row.Keys[1] != "title" || row.Values[1] != "CTO" {
		t.Errorf("mapped = %v %v, want sorted company, title", row.Keys, row.Values)
	}
	if !row.EventTime.Equal(want.EventTime) || row.EventMs != want.EventTime.UnixMilli() {
		t.Errorf("event_time = %v (%d ms), want %v", row.EventTime, row.EventMs, want.EventTime)
	}
}

// TestLoadsContextColumns: the Signal v2 fields the contract derives (campaign, page, device, library, group,
// email domain) become the analyst columns of signals, LowCardinality ones included, on 18.16.
func TestLoadsContextColumns(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	s := signal("acme", 1)
	s.Status, s.Email, s.EmailDomain, s.GroupID, s.PreviousID = schemas.StatusLinked, "ann@acme.test", "acme.test", "g-1", "p-1"
	s.EventContext = contextFields()
	e.produce(e.signalRecord(s), e.signalRecord(signal("acme", 2)))
	e.waitCount(2, 30*time.Second, "SELECT count() FROM signals")
	cols := "group_id, previous_id, email_domain, utm_source, utm_medium, utm_campaign, utm_term, utm_content, " +
		"referrer, page_path, page_title, page_search, user_agent, ip, locale, timezone, library_name, library_version"
	got := make([]string, 18)
	ptrs := make([]any, len(got))
	for i := range got {
		ptrs[i] = &got[i]
	}
	if err := e.ch.Conn.QueryRow(context.Background(), "SELECT "+cols+" FROM signals WHERE signal_id = 'sig-00001'").Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	c := s.EventContext
	want := []string{"g-1", "p-1", "acme.test", c.UTMSource, c.UTMMedium, c.UTMCampaign, c.UTMTerm, c.UTMContent,
		c.Referrer, c.PagePath, c.PageTitle, c.PageSearch, c.UserAgent, c.IP, c.Locale, c.Timezone, c.LibraryName,
		c.LibraryVersion}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("columns %s = %q, want %q", cols, got, want)
			break
		}
	}
	// A signal without the fields (a v1 record, say) reads empty strings.
	if n := e.count("SELECT count() FROM signals WHERE signal_id = 'sig-00002' AND utm_source = '' AND user_agent = ''"); n != 1 {
		t.Errorf("signal without context: %d rows with empty columns, want 1", n)
	}
}

// contextFields is a campaign click from a browser.
func contextFields() schemas.EventContext {
	return schemas.EventContext{UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring", UTMTerm: "crm",
		UTMContent: "ad-1", Referrer: "https://search.test/?q=crm", PagePath: "/pricing", PageTitle: "Pricing",
		PageSearch: "?utm_source=google", UserAgent: "Mozilla/5.0 (X11; Linux x86_64)", IP: "203.0.113.9",
		Locale: "en-US", Timezone: "Europe/Paris", LibraryName: "analytics.js", LibraryVersion: "4.1.0"}
}
