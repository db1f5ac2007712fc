package processor

import (
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// The first case: {"anonymousId":"guest","userId":"U"} is routed by U (the edge) and held under U (the
// processor), so U's identify rehydrates it. (Before the contract the edge routed by "guest" and the processor
// held under U: the track stayed cold forever on another partition than U's link.)
func TestGuestWithUserIDIsHeldUnderTheUserID(t *testing.T) {
	payload := `{"type":"track","anonymousId":"guest","userId":"U","event":"X"}`
	if got := routingID(t, payload); got != "U" {
		t.Fatalf("routed by %q, want U", got)
	}
	r := newRig(t, nil)
	cold := r.event("t", payload)
	if len(cold) != 1 || cold[0].Status != schemas.StatusCold {
		t.Fatalf("%+v", cold)
	}
	if _, ok, _ := r.core.getIdentity(r.st, "t", visitor{schemas.IDKindUser, "U"}); ok {
		t.Fatal("identity before the identify")
	}
	if b, _ := r.st.Get(counterKey("t", visitor{schemas.IDKindUser, "U"})); b == nil {
		t.Fatal("the track is not held under U")
	}
	got := r.event("t", identify("", "U", "u@x.io"))
	if len(got) != 2 || got[0].SignalID != cold[0].SignalID || got[0].Status != schemas.StatusLinked || got[0].Email != "u@x.io" {
		t.Fatalf("identify of U: %+v, want the track rehydrated", got)
	}
	for _, l := range r.em.links {
		if l.ID == "guest" || l.AnonymousID == "guest" {
			t.Fatalf("a placeholder was linked: %+v", l)
		}
	}
}

// A group call with traits.email (the company's billing address) links nobody and creates no lead; its traits
// are the group's; the visitor's later signals carry the group, and a visitor who is a lead stays that lead.
func TestGroupCallLinksNobody(t *testing.T) {
	r := newRig(t, nil)
	g := r.event("t", `{"type":"group","anonymousId":"v","groupId":"acme","traits":{"email":"billing@acme.io","name":"Acme"}}`)
	if len(g) != 1 || g[0].Status != schemas.StatusCold || g[0].Email != "" || g[0].GroupID != "acme" ||
		g[0].Traits != `{"email":"billing@acme.io","name":"Acme"}` || len(r.em.links) != 0 {
		t.Fatalf("group call: %+v links %+v", g, r.em.links)
	}
	if id, _, _ := r.core.getIdentity(r.st, "t", visitor{schemas.IDKindAnonymous, "v"}); id.Email != "" || id.GroupID != "acme" {
		t.Fatalf("identity after the group call: %+v", id)
	}
	p := r.event("t", page("v", "", "Pricing"))
	if len(p) != 1 || p[0].Status != schemas.StatusCold || p[0].GroupID != "acme" {
		t.Fatalf("later page: %+v, want cold, in group acme", p)
	}
	// The visitor identifies: the page is rehydrated to the person, still in the group.
	got := r.event("t", identify("v", "", "ann@acme.io"))
	if len(got) < 2 || got[0].Email != "ann@acme.io" || got[0].GroupID != "acme" {
		t.Fatalf("identify: %+v", got)
	}
	// Another group call with an email changes no lead.
	r.event("t", `{"type":"group","anonymousId":"v","groupId":"acme2","traits":{"email":"ap@acme2.io"}}`)
	later := r.event("t", page("v", "", "Docs"))
	if len(later) != 1 || later[0].Email != "ann@acme.io" || later[0].GroupID != "acme2" || later[0].EmailDomain != "acme.io" {
		t.Fatalf("after a second group call: %+v", later)
	}
	for _, l := range r.em.links {
		if l.Email != "ann@acme.io" {
			t.Fatalf("a group's email was linked: %+v", l)
		}
	}
	// A mapping rule mapping a group call's traits.email to the lead is ignored too.
	rr := newRig(t, func(c *CoreConfig) {
		c.Mapper = staticMapper(t, "tenant: t\nid: r\nmatch:\n  type: group\nmap:\n  email: traits.email\n")
	})
	rr.event("t", `{"type":"group","anonymousId":"w","groupId":"g","traits":{"email":"billing@g.io"}}`)
	if len(rr.em.links) != 0 {
		t.Fatalf("a rule linked a group call: %+v", rr.em.links)
	}
}

// aliasRig is a core rig whose emitter also records the alias pairs sent to the userId's partition.
type aliasRecorder struct {
	recorder
	pairs [][3]string // tenant, userId, anonymousId
}

func (a *aliasRecorder) Alias(tenant, userID, anonymousID string) {
	a.pairs = append(a.pairs, [3]string{tenant, userID, anonymousID})
}

// alias links previousId to userId (on the userId's partition, as a cold event carrying both ids does), under
// the placeholder rules: once userId identifies, previousId's held signals are rehydrated.
func TestAliasLinksPreviousID(t *testing.T) {
	r := newRig(t, nil)
	em := &aliasRecorder{}
	r.em = &em.recorder
	process := func(payload string) {
		t.Helper()
		r.off++
		raw := edgeRaw(t, "t", payload, r.now)
		if err := r.core.ProcessEvent(r.st, em, 0, r.off, nil, raw); err != nil {
			t.Fatal(err)
		}
	}
	process(page("prev-1", "", "P"))
	process(`{"type":"alias","previousId":"prev-1","userId":"U"}`)
	process(`{"type":"alias","previousId":"guest","userId":"U"}`) // a placeholder is never an alias
	process(`{"type":"alias","previousId":"U","userId":"U"}`)
	if len(em.pairs) != 1 || em.pairs[0] != [3]string{"t", "U", "prev-1"} {
		t.Fatalf("alias pairs %+v, want only (U, prev-1)", em.pairs)
	}
	// U's partition (the same state here) records the pair; U identifies; the link for prev-1 reaches prev-1's
	// partition and rehydrates its page.
	if err := r.core.ApplyAlias(r.st, em, "t", "U", "prev-1"); err != nil {
		t.Fatal(err)
	}
	process(identify("", "U", "u@x.io"))
	var link *schemas.IdentityLink
	for i := range em.links {
		if em.links[i].ID == "prev-1" {
			link = &em.links[i]
		}
	}
	if link == nil || link.Email != "u@x.io" {
		t.Fatalf("no link for prev-1: %+v", em.links)
	}
	n := len(em.signals)
	if err := r.core.ApplyLink(r.st, em, link); err != nil {
		t.Fatal(err)
	}
	if got := em.signals[n:]; len(got) != 1 || got[0].Event != "P" || got[0].Email != "u@x.io" {
		t.Fatalf("prev-1's page after the link: %+v", got)
	}
}

// The upgrade: a signal keeps the id it was first emitted with, so neither a retry straddling it (either order)
// nor a replay nor the rehydration of a signal held before it makes a second ClickHouse row.
func TestUpgradeKeepsFirstIDs(t *testing.T) {
	payload := `{"type":"page","anonymousId":"v","messageId":"m1","properties":{"name":"Pricing","price":1.50}}`
	// Segment retries an event as it sent it; here in another key order, spacing and sentAt, which the legacy id
	// did not count either. (A retry whose numbers or escapes are written differently had another id before the
	// upgrade: the old processor made two signals of it, and no lookup can tell them from two events.)
	retry := `{"messageId":"m1", "properties":{"price":1.50,"name":"Pricing"},"anonymousId":"v","type":"page","sentAt":"x"}`
	legacy, _ := contract.LegacySignalID([]byte(payload))
	fresh := edgeRaw(t, "t", payload, testNow).SignalID
	if legacy == "" || legacy == fresh {
		t.Fatalf("legacy id %q, contract id %q", legacy, fresh)
	}

	t.Run("v1 first, v2 retry", func(t *testing.T) {
		r := newRig(t, nil)
		first := r.record(v1Raw(edgeRaw(t, "t", payload, r.now)), 1)
		if len(first) != 1 || first[0].SignalID != legacy {
			t.Fatalf("v1 record emitted %+v, want its legacy id", first)
		}
		// Without the legacy lookups (a partition with no state from before the upgrade) it would be new again:
		// this is what the lookups prevent.
		if got := r.at("t", payload, 2); len(got) != 1 {
			t.Fatalf("control: %+v", got)
		}
		r = newRig(t, nil)
		r.record(v1Raw(edgeRaw(t, "t", payload, r.now)), 1)
		r.core.SetLegacyLookups(true)
		if got := r.at("t", retry, 2); len(got) != 0 {
			t.Fatalf("v2 retry of a v1 event emitted %+v", got)
		}
		if r.core.Stats.LegacyHits != 1 {
			t.Errorf("legacy hits = %d", r.core.Stats.LegacyHits)
		}
		// A replay of the first offset re-emits under the first id, one version up.
		if got := r.record(v1Raw(edgeRaw(t, "t", payload, r.now)), 1); len(got) != 1 || got[0].SignalID != legacy || versionCount(got[0].Version) != 2 {
			t.Fatalf("replay: %+v", got)
		}
		// And a replay of the v2 retry's offset is a duplicate of the first signal (it was one).
		if got := r.at("t", retry, 2); len(got) != 0 {
			t.Fatalf("replayed retry: %+v", got)
		}
	})
	t.Run("v2 first, v1 retry (an edge not upgraded yet)", func(t *testing.T) {
		r := newRig(t, nil)
		first := r.at("t", payload, 1)
		if len(first) != 1 || first[0].SignalID != fresh {
			t.Fatalf("%+v", first)
		}
		if got := r.record(v1Raw(edgeRaw(t, "t", retry, r.now)), 2); len(got) != 0 {
			t.Fatalf("v1 retry of a v2 event emitted %+v", got)
		}
	})
	t.Run("held before the upgrade, rehydrated after", func(t *testing.T) {
		r := newRig(t, nil)
		cold := r.record(v1Raw(edgeRaw(t, "t", payload, r.now)), 1)
		// Make the held record what the processor before the contract wrote: no pinned id, no derived fields.
		hk := heldKey("t", visitor{schemas.IDKindAnonymous, "v"}, 0)
		b, _ := r.st.Get(hk)
		h, err := decodeHeld(b)
		if err != nil || h.SignalID != legacy || len(h.Derived) == 0 { // emitted under its legacy id: pinned
			t.Fatalf("held %+v %v", h, err)
		}
		h.SignalID, h.Derived = "", nil
		r.st.Set(hk, h.encode())
		got := r.at("t", identify("v", "", "v@x.io"), 2)
		if len(got) != 2 || got[0].SignalID != cold[0].SignalID || versionCount(got[0].Version) != 2 || got[0].Status != schemas.StatusLinked {
			t.Fatalf("rehydrated %+v, want %s version 2", got, cold[0].SignalID)
		}
	})
	t.Run("held after the upgrade keeps its id and never parses", func(t *testing.T) {
		r := newRig(t, nil)
		cold := r.at("t", payload, 1)
		hk := heldKey("t", visitor{schemas.IDKindAnonymous, "v"}, 0)
		b, _ := r.st.Get(hk)
		h, _ := decodeHeld(b)
		h.Payload = []byte(`not json`) // rehydration must take the held fields, not the payload
		r.st.Set(hk, h.encode())
		got := r.at("t", identify("v", "", "v@x.io"), 2)
		if len(got) != 2 || got[0].SignalID != cold[0].SignalID || got[0].Event != "Pricing" || versionCount(got[0].Version) != 2 {
			t.Fatalf("rehydrated %+v", got)
		}
	})
}
