package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestEventContractEndToEnd is issue 12's acceptance with the real binaries against the real Kafka and
// ClickHouse: the cases the edge and the processor used to disagree on, posted over HTTP as a user would, and
// read back as rows.
//   - {"anonymousId":"guest","userId":U}: routed by U and held under U, so U's identify rehydrates it (it stayed
//     cold forever before);
//   - a group call with traits.email links nobody and creates no lead;
//   - PHP's "a\/b" is the visitor a/b, linked by an identify that says "a/b";
//   - a client whose clock is six years behind gets Segment's clock-skew correction.
func TestEventContractEndToEnd(t *testing.T) {
	p := startPipeline(t, "-admin-addr", freeAddr(t))
	run := fmt.Sprint(time.Now().UnixNano())
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(p.base+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting %s: %d %s", body, resp.StatusCode, b)
		}
	}
	type row struct {
		status, email, anon, user string
		eventMs                   int64
		received                  time.Time
	}
	get := func(messageID string) (row, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var r row
		err := p.ch.Conn.QueryRow(ctx, "SELECT status, email, anonymous_id, user_id, event_time_ms, received_at FROM signals FINAL WHERE tenant = 'dev' AND message_id = ?",
			messageID).Scan(&r.status, &r.email, &r.anon, &r.user, &r.eventMs, &r.received)
		return r, err == nil
	}
	count := func(query string, args ...any) uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var n uint64
		if err := p.ch.Conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}

	// U must live on another partition than "guest" (3 partitions): on the same one the old edge's mistake would
	// go unseen.
	partition := func(id string) int {
		return kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: []byte("dev|" + id)}, 3)
	}
	user := "U-" + run
	for i := 0; partition(user) == partition("guest"); i++ {
		user = fmt.Sprintf("U-%s-%d", run, i)
	}
	post(fmt.Sprintf(`{"type":"track","anonymousId":"guest","userId":%q,"event":"Guest Track","messageId":"guest-%s"}`, user, run))
	visitor := "v-" + run
	post(fmt.Sprintf(`{"type":"group","anonymousId":%q,"groupId":"acme","messageId":"group-%s","traits":{"email":"billing-%s@acme.io","name":"Acme"}}`, visitor, run, run))
	post(fmt.Sprintf(`{"type":"page","anonymousId":%q,"messageId":"page-%s","properties":{"url":"https://x.io/pricing"}}`, visitor, run))
	post(fmt.Sprintf(`{"type":"page","anonymousId":"a\/b-%s","messageId":"php-%s","properties":{"url":"https://x.io/docs"}}`, run, run))
	post(fmt.Sprintf(`{"type":"track","anonymousId":"skew-%s","event":"Skewed","messageId":"skew-%s","timestamp":"2020-01-01T00:00:00.000Z","sentAt":"2020-01-01T00:00:05.000Z"}`, run, run))

	// Everything arrives cold first (no identify yet).
	for _, m := range []string{"guest-", "group-", "page-", "php-", "skew-"} {
		waitFor(t, 90*time.Second, "the "+m+" row", func() bool { _, ok := get(m + run); return ok })
	}
	if r, _ := get("guest-" + run); r.status != "cold" || r.user != user || r.anon != "guest" {
		t.Fatalf("guest track before the identify: %+v", r)
	}

	// Clock skew: received - (sentAt - timestamp), five seconds before the edge received it.
	r, _ := get("skew-" + run)
	if d := r.received.Add(-5*time.Second).UnixMilli() - r.eventMs; d < -1000 || d > 1000 {
		t.Errorf("skewed client: event time %v, received %v; want 5 s before receipt", time.UnixMilli(r.eventMs).UTC(), r.received)
	}

	// The identifies: U, and a/b as an ordinary client writes it.
	post(fmt.Sprintf(`{"type":"identify","userId":%q,"messageId":"id-u-%s","traits":{"email":"u-%s@x.io"}}`, user, run, run))
	post(fmt.Sprintf(`{"type":"identify","anonymousId":"a/b-%s","messageId":"id-ab-%s","traits":{"email":"ab-%s@x.io"}}`, run, run, run))

	// Each case is checked on its own (an error, not a stop), so a regression shows every case it breaks.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("timed out waiting for %s", what)
				return
			}
		}
	}
	eventually("the guest track rehydrated to U's lead", func() bool {
		r, ok := get("guest-" + run)
		return ok && r.status == "linked" && r.email == "u-"+run+"@x.io"
	})
	eventually(`the "a\/b" page linked to a/b's lead`, func() bool {
		r, ok := get("php-" + run)
		return ok && r.status == "linked" && r.email == "ab-"+run+"@x.io" && r.anon == "a/b-"+run
	})
	if n := count("SELECT count() FROM identities FINAL WHERE tenant = 'dev' AND id = ?", "a/b-"+run); n != 1 {
		t.Errorf("identities of a/b: %d, want 1", n)
	}
	// The group call linked nobody: no identity, no lead, and the visitor's page is still cold.
	if n := count("SELECT count() FROM identities FINAL WHERE tenant = 'dev' AND (id = ? OR email = ?)", visitor, "billing-"+run+"@acme.io"); n != 0 {
		t.Errorf("the group call made %d identity rows", n)
	}
	if n := count("SELECT count() FROM leads WHERE tenant = 'dev' AND email = ?", "billing-"+run+"@acme.io"); n != 0 {
		t.Errorf("the group's billing address became a lead")
	}
	for _, m := range []string{"group-", "page-"} {
		if r, _ := get(m + run); r.status != "cold" || r.email != "" {
			t.Errorf("%s row after the group call: %+v, want cold without email", m, r)
		}
	}
	if n := count("SELECT count() FROM signals FINAL WHERE tenant = 'dev' AND message_id = ?", "guest-"+run); n != 1 {
		t.Errorf("the guest track has %d rows, want one (rehydration replaced it)", n)
	}
}
