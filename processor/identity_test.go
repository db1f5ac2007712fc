package processor

import (
	"fmt"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

func page(anon, user, name string) string {
	return fmt.Sprintf(`{"type":"page","anonymousId":%q,"userId":%q,"messageId":"p-%s-%s","properties":{"name":%q}}`, anon, user, anon, name, name)
}

func identify(anon, user, email string) string {
	traits := `{"name":"Ann","company":"Acme"}`
	if email != "" {
		traits = fmt.Sprintf(`{"email":%q,"name":"Ann","company":"Acme"}`, email)
	}
	return fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"messageId":"i-%s-%s","traits":%s}`, anon, user, anon, email, traits)
}

func TestRehydrationOnIdentify(t *testing.T) {
	r := newRig(t, nil)
	var cold []schemas.Signal
	for i := range 3 {
		got := r.event("t", page("a1", "", fmt.Sprint("P", i)))
		if len(got) != 1 || got[0].Status != schemas.StatusCold || got[0].Email != "" {
			t.Fatalf("page %d: %+v", i, got)
		}
		cold = append(cold, got[0])
	}
	got := r.event("t", identify("a1", "u1", "Ann@Acme.io"))
	if len(got) != 4 {
		t.Fatalf("identify emitted %d signals, want 3 rehydrated + itself", len(got))
	}
	for i, s := range got[:3] {
		if s.SignalID != cold[i].SignalID || versionCount(s.Version) != 2 || s.Status != schemas.StatusLinked || s.Email != "ann@acme.io" {
			t.Errorf("rehydrated %d: %+v", i, s)
		}
	}
	if s := got[3]; s.Event != "identify" || s.Status != schemas.StatusLinked || s.Email != "ann@acme.io" || versionCount(s.Version) != 1 {
		t.Errorf("identify signal: %+v", s)
	}
	if len(r.em.links) != 2 || r.em.links[0].ID != "a1" || r.em.links[1].ID != "u1" || r.em.links[1].IDKind != schemas.IDKindUser {
		t.Errorf("links: %+v", r.em.links)
	}
	// After the link: linked at once, nothing held.
	if got := r.event("t", page("a1", "", "Later")); len(got) != 1 || got[0].Email != "ann@acme.io" {
		t.Errorf("after link: %+v", got)
	}
	// userId-only events on this partition resolve too.
	if got := r.event("t", track("", "u1", "Server", "")); len(got) != 1 || got[0].Email != "ann@acme.io" {
		t.Errorf("userId only: %+v", got)
	}
	if r.core.Stats.Rehydrated != 3 {
		t.Errorf("rehydrated = %d", r.core.Stats.Rehydrated)
	}
}

func TestIdentityFlowsCore(t *testing.T) {
	t.Run("properties.email links", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t", page("a", "", "P"))
		got := r.event("t", track("a", "", "Form", `,"properties":{"email":"Lead@X.io"}`))
		if len(got) != 2 || versionCount(got[0].Version) != 2 || got[1].Email != "lead@x.io" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("identify without email records traits, no lead", func(t *testing.T) {
		r := newRig(t, nil)
		got := r.event("t", identify("a", "", ""))
		if len(got) != 1 || got[0].Status != schemas.StatusCold || len(r.em.links) != 0 {
			t.Fatalf("%+v links %+v", got, r.em.links)
		}
		id, ok, _ := r.core.getIdentity(r.st, "t", visitor{schemas.IDKindAnonymous, "a"})
		if !ok || id.Email != "" || id.Traits != `{"company":"Acme","name":"Ann"}` {
			t.Errorf("identity %+v %v", id, ok)
		}
		// A later link enriches signals without traits with the traits recorded.
		got = r.event("t", track("a", "", "Buy", `,"properties":{"email":"a@x.io"}`))
		last := got[len(got)-1]
		if last.Email != "a@x.io" {
			t.Errorf("%+v", last)
		}
		if got := r.event("t", page("a", "", "Q")); got[0].Traits == "{}" {
			t.Errorf("linked signal not enriched: %+v", got[0])
		}
	})
	t.Run("illegal ids never link", func(t *testing.T) {
		// ("" too, but the edge refuses a Segment call without any id: see the contract's tests.)
		for _, id := range []string{"null", "undefined", "0", "anonymous", "guest", "NULL", "None", "[object Object]",
			"00000000-0000-0000-0000-000000000000", "n/a"} {
			r := newRig(t, nil)
			r.event("t", page(id, "", "P"))
			got := r.event("t", identify(id, "", "x@y.io"))
			if len(r.em.links) != 0 {
				t.Errorf("id %q linked: %+v", id, r.em.links)
			}
			if len(got) != 1 {
				t.Errorf("id %q: rehydrated something: %+v", id, got)
			}
			if got := r.event("t", page(id, "", "Q")); got[0].Status != schemas.StatusCold {
				t.Errorf("id %q: later page linked: %+v", id, got)
			}
		}
	})
	t.Run("two devices one email", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t", page("d1", "", "P"))
		r.event("t", page("d2", "", "P"))
		if got := r.event("t", identify("d1", "", "x@y.io")); len(got) != 2 {
			t.Fatalf("%+v", got)
		}
		if got := r.event("t", identify("d2", "", "x@y.io")); len(got) != 2 || got[0].Email != "x@y.io" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("changed email", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t", identify("a", "", "old@x.io"))
		before := r.event("t", page("a", "", "P1"))
		r.now = r.now.Add(time.Second)
		r.event("t", identify("a", "", "new@x.io"))
		after := r.event("t", page("a", "", "P2"))
		if before[0].Email != "old@x.io" || after[0].Email != "new@x.io" {
			t.Fatalf("before %+v after %+v", before, after)
		}
		// An echo of the old link from the identities topic changes nothing.
		old := r.em.links[0]
		if err := r.core.ApplyLink(r.st, r.em, &old); err != nil {
			t.Fatal(err)
		}
		if got := r.event("t", page("a", "", "P3")); got[0].Email != "new@x.io" {
			t.Errorf("stale link applied: %+v", got)
		}
	})
	t.Run("same anonymousId in two tenants", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t1", page("a", "", "P"))
		r.event("t2", page("a", "", "P"))
		got := r.event("t1", identify("a", "", "x@t1.io"))
		if len(got) != 2 || got[0].Tenant != "t1" {
			t.Fatalf("%+v", got)
		}
		if got := r.event("t2", page("a", "", "Q")); got[0].Status != schemas.StatusCold {
			t.Errorf("tenant t2 linked through t1: %+v", got)
		}
	})
	t.Run("link from identities rehydrates userId-only signals", func(t *testing.T) {
		r := newRig(t, nil)
		r.event("t", track("", "u9", "Server A", ""))
		r.event("t", track("", "u9", "Server B", ""))
		n := len(r.em.signals)
		l := &schemas.IdentityLink{Tenant: "t", IDKind: schemas.IDKindUser, ID: "u9", Email: "u9@x.io", LinkedAt: r.now}
		if err := r.core.ApplyLink(r.st, r.em, l); err != nil {
			t.Fatal(err)
		}
		got := r.em.signals[n:]
		if len(got) != 2 || got[0].Email != "u9@x.io" || versionCount(got[1].Version) != 2 {
			t.Fatalf("%+v", got)
		}
		if got := r.event("t", track("", "u9", "Server C", "")); got[0].Email != "u9@x.io" {
			t.Errorf("%+v", got)
		}
	})
}

func TestColdStorageBounds(t *testing.T) {
	r := newRig(t, func(c *CoreConfig) { c.MaxHeldPerVisitor = 3 })
	for i := range 5 {
		r.event("t", page("a", "", fmt.Sprint("P", i)))
	}
	if r.core.Stats.HeldEvicted != 2 {
		t.Errorf("evicted = %d, want 2", r.core.Stats.HeldEvicted)
	}
	got := r.event("t", identify("a", "", "x@y.io"))
	if len(got) != 4 || got[0].PageName != "P2" {
		t.Fatalf("rehydrated %+v", got)
	}

	// Age: held longer than MaxHeldAge falls out, by sweep or when the visitor is linked.
	r = newRig(t, func(c *CoreConfig) { c.MaxHeldAge = time.Hour })
	r.event("t", page("b", "", "Old"))
	r.event("t", page("c", "", "Old"))
	r.now = r.now.Add(2 * time.Hour)
	r.event("t", page("b", "", "New"))
	sweepAll(t, r)
	if r.core.Stats.HeldExpired != 2 {
		t.Errorf("expired = %d, want 2", r.core.Stats.HeldExpired)
	}
	got = r.event("t", identify("b", "", "x@y.io"))
	if len(got) != 2 || got[0].PageName != "New" {
		t.Fatalf("rehydrated %+v", got)
	}
	for k := range r.st {
		if k[0] == prefixHeld && k[1] == 't' && k[3] == 'a' {
			t.Errorf("held key left: %q", k)
		}
	}
	if _, ok := r.st[string(counterKey("t", visitor{schemas.IDKindAnonymous, "c"}))]; ok {
		t.Error("counter of an emptied visitor left")
	}
}
