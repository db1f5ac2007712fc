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
