package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
)

// TestForget: `sink forget -email` publishes an erasure; the running sink removes every row of that person from
// every table (their signals, also those still cold under a linked visitor id, their lead_signals, identity links,
// lead fields and dead letters), reports what it removed, and a replay afterwards does not bring them back. The
// other lead of the tenant is untouched.
func TestForget(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Registry = reg
	e.start(cfg)
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	mk := func(i int, anon, email string) schemas.Signal {
		s := signal("acme", i)
		s.AnonymousID, s.EventTime = anon, at.Add(time.Duration(i)*time.Second)
		if email != "" {
			s.Status, s.Email = schemas.StatusLinked, email
		}
		return s
	}
	cold := mk(1, "a1", "") // held, later linked
	linked := cold          // its v2
	linked.Version, linked.Status, linked.Email = 2, schemas.StatusLinked, "ann@acme.test"
	identify := mk(2, "a1", "ann@acme.test")
	identify.Type, identify.Event, identify.Traits = "identify", "identify", `{"name":"Ann"}`
	expired := mk(3, "a1", "") // cold for good: its hold expired before ann identified
	bob := mk(4, "b1", "bob@acme.test")
	bob.Traits = `{"name":"Bob"}`
	bob.Type, bob.Event = "identify", "identify"
	recs := []*kgo.Record{e.signalRecord(cold), e.signalRecord(identify), e.signalRecord(expired),
		e.signalRecord(bob), e.signalRecord(linked),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1",
			Email: "ann@acme.test", AnonymousID: "a1", Traits: `{"company":"Acme"}`, LinkedAt: at}),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "b1",
			Email: "bob@acme.test", AnonymousID: "b1", LinkedAt: at}),
		e.deadLetterRecord(schemas.DeadLetter{Tenant: "acme", Stage: "processor", Reason: "bad json",
			Topic: e.k.Topic(schemas.TopicRaw), Partition: 1, Offset: 9, Key: []byte("acme|a1"),
			Payload: []byte(`{"anonymousId":"a1"`), FailedAt: at}),
	}
	e.produce(recs...)
	e.waitCount(5, 30*time.Second, "SELECT count() FROM signals")
	e.waitCount(3, 30*time.Second, "SELECT count() FROM lead_signals")
	e.waitCount(2, 30*time.Second, "SELECT count() FROM leads")
	e.waitCount(1, 30*time.Second, "SELECT count() FROM dead_letters")

	ctx := context.Background()
	id, rep, err := sink.Forget(ctx, cfg, sink.ForgetRequest{Tenant: "acme", Email: "Ann@Acme.test", Wait: time.Minute})
	if err != nil {
		t.Fatalf("Forget: %v", err)
	}
	want := map[string]uint64{"signals": 4, "lead_signals": 2, "identities": 1, "lead_fields": 2, "dead_letters_v2": 1}
	for table, n := range want {
		if rep.Rows[table] != n {
			t.Errorf("report %s: %s removed %d rows, want %d (report %v)", id, table, rep.Rows[table], n, rep.Rows)
		}
	}
	waitMutations(t, e.ch)
	for _, q := range []string{
		"SELECT count() FROM signals WHERE email = 'ann@acme.test' OR anonymous_id = 'a1'",
		"SELECT count() FROM lead_signals WHERE email = 'ann@acme.test'",
		"SELECT count() FROM identities WHERE email = 'ann@acme.test' OR id = 'a1'",
		"SELECT count() FROM lead_fields WHERE email = 'ann@acme.test'",
		"SELECT count() FROM leads WHERE email = 'ann@acme.test'",
		"SELECT count() FROM dead_letters WHERE key = 'acme|a1'",
	} {
		if n := e.count(q); n != 0 {
			t.Errorf("after the erasure %s = %d, want 0", q, n)
		}
	}
	if n := e.count("SELECT count() FROM leads WHERE email = 'bob@acme.test' AND name = 'Bob'"); n != 1 {
		t.Errorf("bob's lead: %d rows, want 1", n)
	}

	// A replay reads every record again, ann's included: the suppression list drops them.
	e.waitCommitted(e.k.Topic(schemas.TopicErasures), 1, 30*time.Second)
	e.stopAll()
	if err := sink.Replay(ctx, cfg, time.Time{}); err != nil {
		t.Fatal(err)
	}
	reg2 := prometheus.NewRegistry()
	cfg.Registry = reg2
	e.start(cfg)
	e.waitCommitted(e.k.Topic(schemas.TopicResolved), 5, 60*time.Second)
	e.waitCommitted(e.k.Topic(schemas.TopicIdentities), 2, 60*time.Second)
	e.waitCommitted(e.k.Topic(schemas.TopicErasures), 1, 60*time.Second)
	waitMutations(t, e.ch)
	if n := e.count("SELECT count() FROM signals WHERE email = 'ann@acme.test' OR anonymous_id = 'a1'"); n != 0 {
		t.Errorf("the replay brought back %d of ann's signals", n)
	}
	if n := e.count("SELECT count() FROM identities_latest WHERE email = 'ann@acme.test'"); n != 0 {
		t.Errorf("the replay brought back ann's identity link")
	}
	if n := e.count("SELECT count() FROM signals_latest WHERE email = 'bob@acme.test'"); n != 1 {
		t.Errorf("bob's signals after the replay: %d, want 1", n)
	}
	if got := metric(t, reg2, "signalstage_sink_suppressed_rows_total", "table", "signals"); got != 4 {
		t.Errorf("suppressed_rows_total{signals} = %v, want 4", got)
	}
}
