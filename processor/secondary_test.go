package processor

import (
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// An event whose anonymousId has no lead but whose userId has one on this partition is the lead's (resolve), and
// it joins the two ids as an identify would: the anonymousId is linked too (identity, link out) and its held
// signals are rehydrated, so its later events without the userId are the lead's as well. (Before, the signal was
// linked through the userId and the anonymousId stayed cold: its held signals were never rehydrated. Had the
// userId been linked on another partition, the alias path would have linked it: the same event gave two
// outcomes.)
func TestSecondaryIDLinksThePrimaryVisitor(t *testing.T) {
	r := newRig(t, nil)
	r.event("t", `{"type":"identify","userId":"u","messageId":"i1","traits":{"email":"u@x.io"}}`)
	held := r.event("t", `{"type":"page","anonymousId":"a","messageId":"p1","properties":{"name":"Before"}}`)
	if held[0].Status != schemas.StatusCold {
		t.Fatalf("a's first page: %s", held[0].Status)
	}
	got := r.event("t", track("a", "u", "Both", ""))
	var rehydrated bool
	for _, s := range got {
		if s.SignalID == held[0].SignalID && s.Status == schemas.StatusLinked && s.Email == "u@x.io" {
			rehydrated = true
		}
	}
	if !rehydrated {
		t.Fatalf("the event with both ids did not rehydrate a's held page: %v", events(got))
	}
	if got := r.event("t", track("a", "", "AnonOnly", "")); got[0].Email != "u@x.io" {
		t.Fatalf("a's later event: %s %q, want linked to u@x.io", got[0].Status, got[0].Email)
	}
	var linked bool
	for _, l := range r.em.links {
		linked = linked || (l.IDKind == schemas.IDKindAnonymous && l.ID == "a" && l.Email == "u@x.io")
	}
	if !linked {
		t.Fatalf("no IdentityLink for a: %+v", r.em.links)
	}
	// A group call is no person's: it links nobody, even through a linked userId.
	r.event("t", `{"type":"group","anonymousId":"g","userId":"u","groupId":"acme","messageId":"g1"}`)
	if got := r.event("t", track("g", "", "AfterGroup", "")); got[0].Status != schemas.StatusCold {
		t.Fatalf("a group call linked its anonymousId: %s %q", got[0].Status, got[0].Email)
	}
}

// Identity links are applied before the raw records of the same poll. Decided: that stays. The order only decides
// how many versions a signal takes (linked at once, or cold then rehydrated), never its final lead: a raw event
// and the link of its visitor, in either order, end with the same highest version's status and email.
func TestLinkAndEventInEitherOrder(t *testing.T) {
	link := schemas.IdentityLink{Tenant: "t", IDKind: schemas.IDKindAnonymous, ID: "a", Email: "a@x.io",
		LinkedAt: time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), SignalID: "s"}
	page := `{"type":"page","anonymousId":"a","messageId":"p1","properties":{"name":"P"}}`
	final := func(linkFirst bool) schemas.Signal {
		r := newRig(t, nil)
		if linkFirst {
			if err := r.core.ApplyLink(r.st, r.em, &link); err != nil {
				t.Fatal(err)
			}
		}
		r.event("t", page)
		if !linkFirst {
			if err := r.core.ApplyLink(r.st, r.em, &link); err != nil {
				t.Fatal(err)
			}
		}
		var last schemas.Signal
		for _, s := range r.em.signals {
			if s.Version > last.Version {
				last = s
			}
		}
		return last
	}
	a, b := final(true), final(false)
	if a.SignalID != b.SignalID || a.Status != schemas.StatusLinked || a.Status != b.Status || a.Email != b.Email {
		t.Fatalf("link first: %s %s %q; event first: %s %s %q", a.SignalID[:8], a.Status, a.Email, b.SignalID[:8], b.Status, b.Email)
	}
}
