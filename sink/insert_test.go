package sink

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// TestSplitByPartitions: a batch whose rows span more event-time months than one INSERT may touch is cut into
// blocks of at most that many months, every row in exactly one block; a batch within the limit, or a table
// without partitions, is one block with its rows untouched.
func TestSplitByPartitions(t *testing.T) {
	signals := func(months int, perMonth int) *table[signalRow] {
		tb := newSignalsTable("db")
		for m := range months {
			for j := range perMonth {
				tb.rows = append(tb.rows, signalRow{SignalID: fmt.Sprintf("m%03d-%d", m, j),
					EventTime: time.Date(2000, time.Month(1+m), 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(j) * time.Hour)})
			}
		}
		rand.Shuffle(len(tb.rows), func(i, j int) { tb.rows[i], tb.rows[j] = tb.rows[j], tb.rows[i] })
		return tb
	}
	for _, tc := range []struct {
		months, limit, blocks int
	}{
		{1, 100, 1}, {100, 100, 1}, {101, 100, 2}, {250, 100, 3}, {312, 100, 4}, {7, 3, 3}, {5, 1, 5},
	} {
		tb := signals(tc.months, 3)
		first := &tb.rows[0]
		blocks := tb.split(tc.limit)
		if len(blocks) != tc.blocks {
			t.Errorf("%d months, limit %d: %d blocks, want %d", tc.months, tc.limit, len(blocks), tc.blocks)
		}
		if len(blocks) == 1 {
			if blocks[0] != buffer(tb) || &tb.rows[0] != first {
				t.Errorf("%d months, limit %d: a batch within the limit was copied or reordered", tc.months, tc.limit)
			}
			continue
		}
		seen := map[string]int{}
		for i, b := range blocks {
			months := map[int]bool{}
			for _, r := range b.(*table[signalRow]).rows {
				months[monthOf(r.EventTime)] = true
				seen[r.SignalID]++
			}
			if len(months) > tc.limit {
				t.Errorf("%d months, limit %d: block %d touches %d months", tc.months, tc.limit, i, len(months))
			}
		}
		if len(seen) != tc.months*3 {
			t.Errorf("%d months, limit %d: %d distinct rows in the blocks, want %d", tc.months, tc.limit, len(seen), tc.months*3)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("row %s is in %d blocks", id, n)
			}
		}
	}

	// ClickHouse computes toYYYYMM of a DateTime('UTC') column in UTC, whatever zone the time was written in.
	cet := time.FixedZone("CET", 3600)
	if got, want := monthOf(time.Date(2026, 2, 1, 0, 30, 0, 0, cet)), 2026*12+0; got != want {
		t.Errorf("monthOf(2026-02-01T00:30+01:00) = %d, want %d (January in UTC)", got, want)
	}

	ids := newTable[identityRow]("db", "identities") // not partitioned: never split
	ids.rows = make([]identityRow, 1000)
	if n := len(ids.split(1)); n != 1 {
		t.Errorf("identities: %d blocks, want 1", n)
	}
}

// TestRefusedByData: only refusals about the rows' values are isolated; load, outages and schema problems are
// retried.
func TestRefusedByData(t *testing.T) {
	ex := func(code int32, msg string) error {
		return fmt.Errorf("inserting 10 rows into signals: %w", &clickhouse.Exception{Code: code, Message: msg})
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{ex(395, "Value passed to 'throwIf' function is non zero"), true},
		{ex(53, "Type mismatch"), true},
		{ex(469, "Constraint `c` is violated"), true},
		{ex(252, "Too many partitions for single INSERT block (more than 100)"), true},
		{ex(252, "Too many parts (300). Merges are processing significantly slower than inserts"), false},
		{ex(241, "Memory limit (total) exceeded"), false},
		{ex(60, "Table signalstage.signals doesn't exist"), false},
		{ex(16, "No such column refused in table"), false},
		{fmt.Errorf("inserting: %w", io.ErrUnexpectedEOF), false},
		{context.DeadlineExceeded, false},
	} {
		if got := refusedByData(tc.err); got != tc.want {
			t.Errorf("refusedByData(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestRecordValueRoundTrip: the dead letter of a refused row carries its record's value encoded again from the
// row; decoding it gives back what the record held, so a redrive sends the same signal or link.
func TestRecordValueRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 30, 5, 6, 7, 891_000_000, time.UTC)
	sig := schemas.Signal{Tenant: "acme", SignalID: "abc", Version: 3, Status: schemas.StatusLinked, Source: "segment",
		Type: "track", Event: "Clicked", MessageID: "m1", AnonymousID: "a1", UserID: "u1", Email: "ann@acme.test",
		URL: "https://acme.test/x", PageName: "X", Properties: `{"b":1}`, Traits: `{"name":"Ann"}`, RuleID: "r1",
		MappedName: "Demo", Mapped: map[string]string{"title": "CTO", "company": "Acme", "email": "ann@acme.test"},
		EventTime: at, ReceivedAt: at.Add(time.Second), ProcessedAt: at.Add(2 * time.Second), RawPartition: 2,
		RawOffset: 99, Payload: []byte(`{"type":"track"}`),
		// Signal v2's derived fields must survive too: a refused row's dead letter is redriven from this value.
		GroupID: "g1", PreviousID: "p1", EmailDomain: "acme.test",
		EventContext: schemas.EventContext{UTMSource: "google", UTMMedium: "cpc", UTMCampaign: "spring",
			UTMTerm: "crm", UTMContent: "ad1", Referrer: "https://google.test/", PagePath: "/x", PageTitle: "X page",
			PageSearch: "?q=1", UserAgent: "Mozilla/5.0", IP: "203.0.113.9", Locale: "en-US", Timezone: "Europe/Paris",
			LibraryName: "analytics.js", LibraryVersion: "4.1.0"}}
	enc, err := schemas.Signals.Encode(&sig)
	if err != nil {
		t.Fatal(err)
	}
	var want schemas.Signal
	if err := schemas.Signals.Decode(enc, &want); err != nil {
		t.Fatal(err)
	}
	row, err := newSignalRow(&want, &kgo.Record{Topic: "signals.resolved", Key: []byte("acme|a1"), Value: enc})
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.Signal
	if err := schemas.Signals.Decode(row.recordValue(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("signal from the row:\n%+v\nwant\n%+v", got, want)
	}

	link := schemas.IdentityLink{Tenant: "acme", IDKind: schemas.IDKindAnonymous, ID: "a1", Email: "ann@acme.test",
		AnonymousID: "a1", UserID: "u1", Traits: `{"title":"CTO"}`, LinkedAt: at, SignalID: "abc"}
	lenc, err := schemas.IdentityLinks.Encode(&link)
	if err != nil {
		t.Fatal(err)
	}
	var wantLink schemas.IdentityLink
	if err := schemas.IdentityLinks.Decode(lenc, &wantLink); err != nil {
		t.Fatal(err)
	}
	irow, err := newIdentityRow(&wantLink, &kgo.Record{Topic: "identities", Key: []byte("acme|a1"), Value: lenc})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(irow.recordValue(), lenc) {
		t.Errorf("identity link from the row differs from its record")
	}
}
