package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// Links are ordered by the linking event's time (the contract's corrected event time), ties broken by its signal
// id, the same on replay and whatever the processing order: an old identify replayed, or delivered late, does not
// re-link a visitor over a newer one, and two links read from the identities topic in either order leave the same
// lead.
func TestLinksOrderedByEventTime(t *testing.T) {
	identify := func(email, ts string) string {
		return fmt.Sprintf(`{"type":"identify","anonymousId":"a","userId":"u","messageId":"i-%s","timestamp":%q,"traits":{"email":%q}}`, email, ts, email)
	}
	later := `{"type":"track","anonymousId":"a","event":"After","messageId":"after-%d"}`
	leadOf := func(r *coreRig, n int) string {
		t.Helper()
		got := r.event("t", fmt.Sprintf(later, n))
		if len(got) != 1 {
			t.Fatalf("%d signals", len(got))
		}
		return got[0].Email
	}
	oldID, newID := identify("old@x.io", "2025-12-31T10:00:00Z"), identify("new@x.io", "2025-12-31T11:00:00Z")

	t.Run("replay of the old identify", func(t *testing.T) {
		r := newRig(t, nil)
		r.at("t", oldID, 1)
		r.at("t", newID, 2)
		if got := leadOf(r, 1); got != "new@x.io" {
			t.Fatalf("before the replay: %q", got)
		}
		links := len(r.em.links)
		r.now = r.now.Add(time.Hour)
		r.at("t", oldID, 1) // a replay reads offset 1 again
		if got := leadOf(r, 2); got != "new@x.io" {
			t.Fatalf("after replaying the old identify the visitor's lead is %q, want new@x.io", got)
		}
		for _, l := range r.em.links[links:] {
			if l.Email == "old@x.io" {
				t.Fatalf("the replay emitted a link to the old email: %+v", l)
			}
		}
	})
	t.Run("old identify delivered late", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t", newID)
		r.event("t", oldID)
		if got := leadOf(r, 1); got != "new@x.io" {
			t.Fatalf("lead %q, want new@x.io", got)
		}
	})
	t.Run("links from the identities topic, either order, ties", func(t *testing.T) {
		at := time.Date(2025, 12, 31, 10, 0, 0, 0, time.UTC)
		a := schemas.IdentityLink{Tenant: "t", IDKind: schemas.IDKindUser, ID: "u9", Email: "a@x.io", LinkedAt: at, SignalID: "aaaa"}
		b := a
		b.Email, b.SignalID = "b@x.io", "bbbb" // the same millisecond: the signal id decides
		c := a
		c.Email, c.LinkedAt = "c@x.io", at.Add(-time.Minute) // older than both
		var leads []string
		for _, order := range [][]schemas.IdentityLink{{a, b, c}, {c, b, a}, {b, c, a}} {
			r := newRig(t, nil)
			for _, l := range order {
				if err := r.core.ApplyLink(r.st, r.em, &l); err != nil {
					t.Fatal(err)
				}
			}
			id, _, err := r.core.getIdentity(r.st, "t", visitor{schemas.IDKindUser, "u9"})
			if err != nil {
				t.Fatal(err)
			}
			leads = append(leads, id.Email)
		}
		for _, l := range leads {
			if l != "b@x.io" {
				t.Fatalf("leads by order of arrival %v, want b@x.io each time", leads)
			}
		}
	})
}

// TestReplayedIdentifyKeepsTheNewerLead, on the real broker, the same user on two devices: device A (cold, with
// both ids, then an identify with the old email), later device B identifies the userId with a new email, which
// reaches A's partition through the userId's aliases. Then `processor replay` re-reads A's partition only, so the
// old identify is processed again after the new link. A's later events stay the new email's: the replayed link is
// older by event time. (Before, the processor's clock ordered links: the replay re-linked A, and through it the
// userId, to the old email.)
func TestReplayedIdentifyKeepsTheNewerLead(t *testing.T) {
	k := testenv.NewKafka(t, 3)
	part := func(id string) int32 { return partitionOfKey(schemas.RoutingKey("t", id), 3) }
	anonA, anonB, user := "dev-a", "dev-b", "user-r"
	for i := 0; part(anonB) == part(anonA); i++ {
		anonB = fmt.Sprintf("dev-b%d", i)
	}
	now := time.Now().UTC()
	identify := func(anon, email string, ago time.Duration) rawIn {
		return rawIn{"t", fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"messageId":"i-%s","timestamp":%q,"traits":{"email":%q}}`,
			anon, user, email, now.Add(-ago).Format(time.RFC3339), email)}
	}
	produce(t, k, rawIn{"t", track(anonA, user, "Cold", "")}, identify(anonA, "old@x.io", 2*time.Hour))
	dir := t.TempDir()
	r := startProcessor(t, k, dir, "p", nil)
	settle(t, k, 2, 2*time.Second)
	produce(t, k, identify(anonB, "new@x.io", time.Hour))
	waitFor(t, k, func(ss []schemas.Signal) bool { return count(ss, "identify") == 2 }, "the new identify")
	waitInputsRead(t, k) // the link to the userId's partition, and the alias's link back to device A's
	produce(t, k, rawIn{"t", track(anonA, "", "BeforeReplay", "")})
	waitFor(t, k, func(ss []schemas.Signal) bool { return count(ss, "BeforeReplay") == 1 }, "device A's event")
	if e := eventEmail(readToEnd(t, k), "BeforeReplay"); e != "new@x.io" {
		t.Fatalf("before the replay device A's event is linked to %q, want new@x.io", e)
	}
	r.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for range 40 {
		_, err = Replay(ctx, ReplayConfig{Brokers: k.Brokers, Topics: k.Topics, UseOffset: true,
			PartitionsList: fmt.Sprint(part(anonA))})
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	r = startProcessor(t, k, dir, "p", nil)
	waitFor(t, k, func(ss []schemas.Signal) bool { return count(ss, "BeforeReplay") == 2 }, "the replay of device A's partition")
	waitInputsRead(t, k) // links the replay may have emitted reach their partitions
	produce(t, k, rawIn{"t", track(anonA, "", "AfterReplay", "")}, rawIn{"t", track("", user, "ByUser", "")})
	waitFor(t, k, func(ss []schemas.Signal) bool { return count(ss, "AfterReplay") == 1 && count(ss, "ByUser") == 1 }, "the events after the replay")
	r.stop(t)
	got := readToEnd(t, k)
	for _, ev := range []string{"AfterReplay", "ByUser"} {
		if e := eventEmail(got, ev); e != "new@x.io" {
			t.Errorf("%s after replaying the old identify: linked to %q, want new@x.io", ev, e)
		}
	}
}

// waitInputsRead waits until the processor's group has committed past every record of its inputs (signals.raw,
// identities, the aliases topic). A link or alias is produced in the transaction that commits the input that
// made it, so once nothing is left unread, a chain of links (userId, then its aliases' partitions) has ended.
// (Not kadm's lag: on a transactional topic it stays above zero by the commit marker after the last record.)
// Instead of a fixed sleep, which a loaded machine can outlast.
func waitInputsRead(t *testing.T, k *testenv.Kafka) {
	t.Helper()
	group := k.Prefix + "processor"
	deadline := time.Now().Add(time.Minute)
	for {
		unread := map[string]int64{}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		committed, err := k.Admin.FetchOffsets(ctx, group)
		cancel()
		if err != nil {
			t.Fatalf("fetching %s's offsets: %v", group, err)
		}
		for _, topic := range []string{k.Topic(schemas.TopicRaw), k.Topic(schemas.TopicIdentities), k.Topics.Prefix + TopicAliases} {
			for _, r := range k.ReadToEnd(topic, time.Minute) {
				if c, ok := committed.Lookup(topic, r.Partition); !ok || c.At <= r.Offset {
					unread[topic]++
				}
			}
		}
		if len(unread) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("records the processor has not committed after a minute: %v", unread)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readToEnd is every signal committed to signals.resolved when it is called. Not readSignals(t, k, 1<<30, d),
// which stops once a read is idle for d: under CI's load that returned before the consumer had fetched the
// signal waitFor had just seen, and the check found no BeforeReplay at all (its email "").
func readToEnd(t *testing.T, k *testenv.Kafka) []schemas.Signal {
	t.Helper()
	return decodeSignals(t, k.ReadToEnd(k.Topic(schemas.TopicResolved), 2*time.Minute))
}

// waitFor reads signals.resolved until cond holds (up to a minute).
func waitFor(t *testing.T, k *testenv.Kafka, cond func([]schemas.Signal) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if cond(readToEnd(t, k)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func count(ss []schemas.Signal, event string) int {
	n := 0
	for _, s := range ss {
		if s.Event == event {
			n++
		}
	}
	return n
}

// eventEmail is the email of the highest version of the (single) signal named event.
func eventEmail(ss []schemas.Signal, event string) string {
	var best schemas.Signal
	for _, s := range ss {
		if s.Event == event && s.Version > best.Version {
			best = s
		}
	}
	return best.Email
}

// The link's signal id is an optional trailing field after the group (written, maybe empty, when the link's id
// is): values from before decode without it, and values with it decode whole, also without a group.
func TestIdentityEncodingWithLinkSignal(t *testing.T) {
	for _, id := range []identity{
		{LinkedAtMs: 1, Email: "a@x.io", Traits: "{}"},
		{LinkedAtMs: 1, Email: "a@x.io", Traits: "{}", GroupID: "g"},
		{LinkedAtMs: 1, Email: "a@x.io", Traits: "{}", LinkSignal: "sig"},
		{LinkedAtMs: 1, Email: "a@x.io", Traits: "{}", GroupID: "g", LinkSignal: "sig"},
	} {
		got, err := decodeIdentity(id.encode())
		if err != nil || got != id {
			t.Errorf("%+v decoded as %+v (%v)", id, got, err)
		}
		lead, err := decodeIdentityLink(id.encode(), false)
		if err != nil || lead.Email != id.Email || lead.GroupID != id.GroupID || lead.LinkSignal != "" {
			t.Errorf("%+v read for its lead as %+v (%v)", id, lead, err)
		}
	}
}
