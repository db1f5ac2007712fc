package rules

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// TestRead: Read returns what the rules topic holds on the real broker as a processor has it: rules applied in
// order, a deleted rule gone, a record that does not decode and a rule that does not validate skipped (and
// reported), each tenant's rules in matching order.
func TestRead(t *testing.T) {
	k := testenv.NewKafka(t, 1)
	topic := k.Topic(schemas.TopicRules)
	cl := k.Client()
	pub := NewPublisher(cl, topic)
	ctx := context.Background()
	low := Rule{Tenant: "acme", ID: "low", Priority: 1, Enabled: true, Match: Match{Event: "A"}, Signal: "a"}
	high := Rule{Tenant: "acme", ID: "high", Priority: 9, Enabled: false, Match: Match{Event: "B"}, Signal: "b"}
	gone := Rule{Tenant: "beta", ID: "gone", Priority: 1, Enabled: true, Match: Match{Event: "C"}, Signal: "c"}
	if err := pub.Apply(ctx, low, high, gone); err != nil {
		t.Fatal(err)
	}
	if err := pub.Delete(ctx, "beta", "gone"); err != nil {
		t.Fatal(err)
	}
	bad := Rule{Tenant: "acme", ID: "bad", Enabled: true, Match: Match{Conditions: []Condition{{Path: "x", Op: "nope"}}}}
	val, err := schemas.MappingRules.Encode(bad.Record())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: bad.Key(), Value: val},
		&kgo.Record{Topic: topic, Key: []byte("acme|junk"), Value: []byte("not avro")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, err := Read(ctx, ReadConfig{Brokers: k.Brokers, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	if ts := c.Tenants(); len(ts) != 1 || ts[0] != "acme" {
		t.Errorf("tenants %v, want [acme] (beta's only rule was deleted)", ts)
	}
	if rs := c.Rules("acme"); len(rs) != 2 || rs[0].ID != "high" || rs[1].ID != "low" {
		t.Errorf("acme rules %+v, want high then low", rs)
	}
	if _, ok := c.Rule("acme", "bad"); ok || len(c.Skipped) != 2 {
		t.Errorf("skipped %v, want the invalid rule and the undecodable record", c.Skipped)
	}
}
