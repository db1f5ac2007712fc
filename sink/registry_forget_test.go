package sink_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// TestRegistryForget: with -schema-registry, `sink forget` registers the erasure schema under the erasures topic's
// subject and writes the registry wire format, like every other writer in registry mode, so a tool reading the
// topics with the registry (AvroConfluent) can read the erasures too.
func TestRegistryForget(t *testing.T) {
	regURL := testenv.NewSchemaRegistry(t)
	k := testenv.NewKafka(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := sink.Config{Brokers: k.Brokers, Topics: k.Topics, SchemaRegistry: regURL}
	id, _, err := sink.Forget(ctx, cfg, sink.ForgetRequest{Tenant: "acme", Email: "Ann@Acme.test"})
	if err != nil {
		t.Fatal(err)
	}
	topic := k.Topic(schemas.TopicErasures)
	recs := k.ReadAll(topic, 1, 30*time.Second)
	if len(recs) != 1 {
		t.Fatalf("%d records on %s, want 1", len(recs), topic)
	}
	v := recs[0].Value
	reader, err := schemas.NewRegistry(ctx, regURL)
	if err != nil {
		t.Fatal(err)
	}
	// The subject's id for this schema (registering what is registered returns its id).
	if err := reader.Register(ctx, topic, schemas.Erasures); err != nil {
		t.Fatal(err)
	}
	want, err := reader.Header(schemas.Erasures)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(v, want) {
		t.Fatalf("erasure starts % x, want the registry header % x", v[:min(len(v), 10)], want)
	}
	var e schemas.Erasure
	if err := schemas.Erasures.DecodeWith(reader, v, &e); err != nil {
		t.Fatal(err)
	}
	if e.RequestID != id || e.Email != "ann@acme.test" || e.Tenant != "acme" {
		t.Fatalf("decoded %+v, want request %s for ann@acme.test", e, id)
	}
}
