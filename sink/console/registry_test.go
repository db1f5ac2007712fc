package console_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/sink"
	"github.com/signalstage/signalstage/testenv"
)

// TestRegistryConsoleTail: with -schema-registry the console's live tail shows a registry-framed signal (its
// writer schema looked up in the real registry) as well as a single-object one.
func TestRegistryConsoleTail(t *testing.T) {
	regURL := testenv.NewSchemaRegistry(t)
	k := testenv.NewKafka(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	writer, err := schemas.NewRegistry(ctx, regURL)
	if err != nil {
		t.Fatal(err)
	}
	topic := k.Topic(schemas.TopicResolved)
	if err := writer.Register(ctx, topic, schemas.Signals); err != nil {
		t.Fatal(err)
	}
	srv := start(t, sink.Config{Brokers: k.Brokers, Topics: k.Topics, ClickHouseAddr: "127.0.0.1:1", Database: "none",
		SchemaRegistry: regURL})
	c := client(t)
	if resp, _ := post(t, c, srv.URL()+"/login", url.Values{"token": {token}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL()+"/tail/stream", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("tail stream: %d", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "event: ready") {
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	sig := func(event string) *schemas.Signal {
		return &schemas.Signal{Tenant: "acme", SignalID: "s-" + event, Version: 1, Status: schemas.StatusCold,
			Type: "track", Event: event, AnonymousID: "a1", EventTime: now, ReceivedAt: now, ProcessedAt: now}
	}
	framed, err := schemas.EncodeSignalWith(writer, sig("Framed Event"))
	if err != nil {
		t.Fatal(err)
	}
	single, err := schemas.EncodeSignal(sig("Single Event"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Client().ProduceSync(ctx, &kgo.Record{Topic: topic, Value: framed}, &kgo.Record{Topic: topic, Value: single}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 2 && lines.Scan() {
		l := lines.Text()
		for _, e := range []string{"Framed Event", "Single Event"} {
			if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"`+e+`"`) {
				seen[e] = true
			}
		}
	}
	if len(seen) < 2 {
		t.Fatalf("tail stream showed %v (%v), want both signals", seen, lines.Err())
	}
}
