package sink_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// TestLatestViewsExact: on a dataset with redeliveries and cold→linked versions, the raw table over-counts and
// FINAL PREWHERE counts a signal whose older version was cold, while signals_latest gives the exact counts, with
// predicate push-down on or off (18.16's default is off; testenv's and deploy's profiles turn it on).
func TestLatestViewsExact(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	x1 := signal("acme", 1) // cold, then linked as v2 (delivered twice)
	x1v2 := x1
	x1v2.Version, x1v2.Status, x1v2.Email = 2, schemas.StatusLinked, "ann@acme.test"
	x2 := signal("acme", 2) // cold, delivered three times
	x3 := signal("acme", 3) // linked
	x3.Status, x3.Email = schemas.StatusLinked, "bob@acme.test"
	other := signal("other", 4)
	var recs []*kgo.Record
	for _, s := range []schemas.Signal{x1, x2, x3, other, x1v2, x2, x1v2, x2} {
		recs = append(recs, e.signalRecord(s))
	}
	e.produce(recs...)
	e.waitCount(uint64(len(recs)), 30*time.Second, "SELECT count() FROM signals")
	if n := e.count("SELECT count() FROM signals WHERE tenant = 'acme'"); n != 7 {
		t.Fatalf("raw signals of acme = %d, want 7 (the redeliveries and versions)", n)
	}
	pitfall := e.count("SELECT count() FROM signals FINAL PREWHERE tenant = 'acme' AND status = 'cold'")
	for _, pushdown := range []int{0, 1} {
		ctx := clickhouse.Context(context.Background(), clickhouse.WithSettings(clickhouse.Settings{
			"enable_optimize_predicate_expression": pushdown}))
		for q, want := range map[string]uint64{
			"SELECT count() FROM signals_latest WHERE tenant = 'acme'":                                       3,
			"SELECT count() FROM signals_latest WHERE tenant = 'acme' AND status = 'cold'":                   1,
			"SELECT count() FROM signals_latest WHERE tenant = 'acme' AND status = 'linked'":                 2,
			"SELECT count() FROM signals_latest WHERE tenant = 'acme' AND email = 'ann@acme.test'":           1,
			"SELECT uniqExact(visitor) FROM signals_latest WHERE tenant = 'acme' AND status = 'cold'":        1,
			"SELECT count() FROM (SELECT * FROM signals_latest WHERE status = 'cold') WHERE tenant = 'acme'": 1,
		} {
			var got uint64
			if err := e.ch.Conn.QueryRow(ctx, q).Scan(&got); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if got != want {
				t.Errorf("push-down %d: %s = %d, want %d", pushdown, q, got, want)
			}
		}
	}
	t.Logf("raw FINAL PREWHERE status = 'cold' counts %d (truth 1); signals_latest counts 1", pitfall)
}

// TestIdentityTombstoneLeavesLeads: a compaction tombstone of identities deletes the link: identities_latest
// leaves it out and a lead known only through that link leaves leads.
func TestIdentityTombstoneLeavesLeads(t *testing.T) {
	e := newEnv(t)
	e.start(e.config())
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	e.produce(
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindUser, ID: "u9", Email: "bob@acme.test",
			UserID: "u9", Traits: `{"name":"Bob"}`, LinkedAt: at}),
		e.identityRecord(schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1", Email: "ann@acme.test",
			AnonymousID: "a1", Traits: `{"name":"Ann"}`, LinkedAt: at}))
	e.waitCount(2, 30*time.Second, "SELECT count() FROM leads")
	e.produce(&kgo.Record{Topic: e.k.Topic(schemas.TopicIdentities), Key: schemas.RoutingKey("acme", "u9")})
	e.waitCount(1, 30*time.Second, "SELECT count() FROM identities_latest")
	if n := e.count("SELECT count() FROM leads WHERE email = 'bob@acme.test'"); n != 0 {
		t.Errorf("bob is still in leads after his only link was deleted")
	}
	if n := e.count("SELECT count() FROM leads WHERE email = 'ann@acme.test' AND name = 'Ann'"); n != 1 {
		t.Errorf("ann left leads: %d rows", n)
	}
}
