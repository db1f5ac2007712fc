package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// TestLeads: the leads view shows per tenant and email the latest enrichment fields, from identify traits,
// identity links and mapping rules (a rule's value wins over a trait of the same signal).
func TestLeads(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	identify := signal("acme", 1)
	identify.Type, identify.Event, identify.Status, identify.Email = "identify", "identify", schemas.StatusLinked, "ann@acme.test"
	identify.Traits = `{"name":"Ann","company":"Acme","title":"Engineer"}`
	identify.EventTime = at
	demo := signal("acme", 2)
	demo.Status, demo.Email, demo.EventTime = schemas.StatusLinked, "ann@acme.test", at.Add(time.Hour)
	demo.RuleID, demo.MappedName = "r-demo", "Demo Requested"
	demo.Traits = `{"title":"Intern"}`
	demo.Mapped = map[string]string{"title": "CTO", "plan": "enterprise"}
	older := signal("acme", 3) // an older identify arriving late must not win
	older.Type, older.Event, older.Status, older.Email = "identify", "identify", schemas.StatusLinked, "ann@acme.test"
	older.Traits, older.EventTime = `{"company":"Old Corp"}`, at.Add(-time.Hour)
	cold := signal("acme", 4) // cold: no lead
	cold.Traits = `{"name":"Nobody"}`
	e.produce(e.signalRecord(identify), e.signalRecord(demo), e.signalRecord(older), e.signalRecord(cold),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindUser, ID: "u9", Email: "bob@acme.test",
			UserID: "u9", Traits: `{"name":"Bob","company":"Acme"}`, LinkedAt: at}))
	e.waitCount(4, 30*time.Second, "SELECT count() FROM signals")
	e.waitCount(1, 30*time.Second, "SELECT count() FROM identities")
	e.waitCount(3, 30*time.Second, "SELECT count() FROM lead_signals") // the views finish after signals shows the rows

	type lead struct{ email, name, company, title string }
	rows, err := e.ch.Conn.Query(context.Background(), "SELECT email, name, company, title FROM leads WHERE tenant = 'acme' ORDER BY email")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []lead
	for rows.Next() {
		var l lead
		if err := rows.Scan(&l.email, &l.name, &l.company, &l.title); err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	want := []lead{{"ann@acme.test", "Ann", "Acme", "CTO"}, {"bob@acme.test", "Bob", "Acme", ""}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("leads = %+v, want %+v", got, want)
	}
	if n := e.count("SELECT count() FROM lead_fields FINAL WHERE email = 'ann@acme.test' AND field = 'plan' AND value = 'enterprise'"); n != 1 {
		t.Errorf("rule field plan: %d rows, want 1", n)
	}
}

// TestLeadSignals: lead_signals, fed by a materialized view, holds the linked signals of a batch that also has cold
// ones, with their campaign columns, one row per signal after FINAL however often it was delivered. (On 18.16 a view
// that filters a natively inserted block and selects a LowCardinality column as it is stored nothing at all.)
func TestLeadSignals(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	ann := signal("acme", 1)
	ann.Status, ann.Email, ann.EventContext = schemas.StatusLinked, "ann@acme.test", contextFields()
	bob := signal("acme", 2)
	bob.Status, bob.Email = schemas.StatusLinked, "bob@acme.test"
	cold := signal("acme", 3)
	cold.EventContext = contextFields()
	e.produce(e.signalRecord(ann), e.signalRecord(cold), e.signalRecord(bob), e.signalRecord(ann))
	e.waitCount(4, 30*time.Second, "SELECT count() FROM signals")
	e.waitCount(3, 30*time.Second, "SELECT count() FROM lead_signals") // ann twice, bob; the cold one never
	if n := e.count("SELECT count() FROM lead_signals FINAL"); n != 2 {
		t.Errorf("lead_signals FINAL has %d rows, want 2 (the linked signals)", n)
	}
	if n := e.count("SELECT count() FROM lead_signals FINAL WHERE email = 'ann@acme.test' AND utm_source = 'google' " +
		"AND utm_campaign = 'spring' AND page_path = '/pricing'"); n != 1 {
		t.Errorf("ann's lead_signals row with her campaign: %d, want 1", n)
	}
}
