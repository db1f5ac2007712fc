package processor

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// Scan makes memState a StateScanner, as the runner's overlay is.
func (m memState) Scan(prefix []byte, fn func(key, value []byte) error) error {
	for k, v := range m {
		if bytes.HasPrefix([]byte(k), prefix) {
			if err := fn([]byte(k), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// erasureRecorder is the recorder plus the identity tombstones.
type erasureRecorder struct {
	*recorder
	tombstones []string
	requests   []schemas.Erasure
}

func (r *erasureRecorder) Erasure(e *schemas.Erasure) { r.requests = append(r.requests, *e) }

func (r *erasureRecorder) Tombstone(tenant, id string) {
	r.tombstones = append(r.tombstones, string(schemas.RoutingKey(tenant, id)))
}

// erasedSet is an ErasedSet of the requests given.
type erasedSet map[[3]string]bool

func (s erasedSet) IsErased(tenant, kind, id string) bool { return s[[3]string{tenant, kind, id}] }

func (s erasedSet) add(e *schemas.Erasure) {
	for kind, id := range map[string]string{ErasedKindEmail: e.Email, schemas.IDKindAnonymous: e.AnonymousID, schemas.IDKindUser: e.UserID} {
		if id != "" {
			s[[3]string{e.Tenant, kind, id}] = true
		}
	}
}

func identifyAs(anon, user, email string) string {
	return fmt.Sprintf(`{"type":"identify","anonymousId":%q,"userId":%q,"traits":{"email":%q},"messageId":"id-%s-%s-%s"}`,
		anon, user, email, anon, user, email)
}

func pageOf(anon, user, path string) string {
	return fmt.Sprintf(`{"type":"page","anonymousId":%q,"userId":%q,"properties":{"url":"https://acme.test%s"},"messageId":"p-%s-%s-%s"}`,
		anon, user, path, anon, user, path)
}

// heldOf counts the held signals and counters of visitor id in st.
func heldOf(st memState, tenant, kind, id string) int {
	n := 0
	for _, p := range []byte{prefixHeld, prefixCounter} {
		k := stateKey(p, tenant, kind, ":", id)
		for sk := range st {
			if bytes.HasPrefix([]byte(sk), k) {
				n++
			}
		}
	}
	return n
}

// TestErasureDropsStateAndSuppresses: an erasure by email drops the person's identities (every id linked to the
// email, tombstoned), their held signals and alias list; by anonymousId, a never-identified visitor's held signals;
// by userId, the email linked to it too. Later events of the person (by email, anonymousId or userId, or linked
// through a rule's email) are suppressed and counted; another person of the tenant is untouched; and a core
// started again over the same state (a restart, no ErasedSet) still suppresses them, as does the ErasedSet over a
// state that lost them (a replay after a restore from scratch).
func TestErasureDropsStateAndSuppresses(t *testing.T) {
	const tn = "acme"
	set := erasedSet{}
	r := newRig(t, func(c *CoreConfig) { c.Erased = set })
	// Ann: two devices, a userId, held then linked; a third device seen with her userId, cold (aliased).
	r.event(tn, pageOf("a-ann", "", "/pricing"))
	r.event(tn, identifyAs("a-ann", "u-ann", "ann@acme.test"))
	r.event(tn, pageOf("a-ann2", "", "/docs"))
	r.event(tn, identifyAs("a-ann2", "", "Ann@Acme.test"))
	if err := r.core.ApplyAlias(r.st, r.em, tn, "u-ann", "a-ann3"); err != nil {
		t.Fatal(err)
	}
	// Bob: the same tenant, linked, plus a cold visitor of his own held.
	r.event(tn, identifyAs("a-bob", "u-bob", "bob@acme.test"))
	r.event(tn, pageOf("a-bob2", "", "/blog"))
	// Carl: never identified, two held page views. Dan: linked by a userId only.
	r.event(tn, pageOf("a-carl", "", "/a"))
	r.event(tn, pageOf("a-carl", "", "/b"))
	r.event(tn, identifyAs("", "u-dan", "dan@acme.test"))
	if n := heldOf(r.st, tn, schemas.IDKindAnonymous, "a-carl"); n != 3 {
		t.Fatalf("carl holds %d keys before the erasure, want 2 held and a counter", n)
	}

	em := &erasureRecorder{recorder: r.em}
	for _, e := range []*schemas.Erasure{
		{Tenant: tn, RequestID: "r1", Email: "ann@acme.test"},
		{Tenant: tn, RequestID: "r2", AnonymousID: "a-carl"},
		{Tenant: tn, RequestID: "r3", UserID: "u-dan"},
	} {
		set.add(e)
		if err := r.core.Erase(r.st, em, e); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(em.tombstones)
	// Tombstones for the ids whose identity the partition held (not carl's, never linked, nor the aliased device's,
	// whose link lives on its own partition).
	want := []string{"acme|a-ann", "acme|a-ann2", "acme|u-ann", "acme|u-dan"}
	if !slices.Equal(em.tombstones, want) {
		t.Fatalf("tombstones %v, want %v", em.tombstones, want)
	}
	for _, v := range []visitor{{"anonymous", "a-ann"}, {"anonymous", "a-ann2"}, {"user", "u-ann"}, {"user", "u-dan"}} {
		if r.st[string(identityKey(tn, v))] != nil {
			t.Errorf("identity of %v kept", v)
		}
	}
	if r.st[string(aliasesKey(tn, "u-ann"))] != nil {
		t.Error("alias list of u-ann kept")
	}
	if n := heldOf(r.st, tn, schemas.IDKindAnonymous, "a-carl"); n != 0 {
		t.Errorf("carl's held signals: %d keys left", n)
	}
	if r.st[string(identityKey(tn, visitor{"anonymous", "a-bob"}))] == nil || heldOf(r.st, tn, schemas.IDKindAnonymous, "a-bob2") != 2 {
		t.Fatal("bob's identity or held signal erased with ann")
	}

	suppressed := func(core *Core, st memState, what, payload string) {
		t.Helper()
		r.core, r.st = core, st
		before := core.Stats.Suppressed
		if out := r.event(tn, payload); len(out) != 0 {
			t.Errorf("%s: emitted %+v", what, out[0])
		}
		if core.Stats.Suppressed != before+1 {
			t.Errorf("%s: not counted as suppressed", what)
		}
	}
	check := func(core *Core, st memState) {
		t.Helper()
		suppressed(core, st, "ann by anonymousId", pageOf("a-ann", "", "/again"))
		suppressed(core, st, "ann by userId", pageOf("", "u-ann", "/again"))
		suppressed(core, st, "ann by email on a new device", identifyAs("a-new", "", "ANN@acme.test"))
		suppressed(core, st, "ann's aliased device", pageOf("a-ann3", "", "/again"))
		suppressed(core, st, "carl by anonymousId", identifyAs("a-carl", "", "carl@acme.test"))
		suppressed(core, st, "dan by the email his userId had", identifyAs("a-dan", "", "dan@acme.test"))
		// Bob is untouched: his event is linked, his held page rehydrated by his identify.
		r.core, r.st = core, st
		if out := r.event(tn, pageOf("a-bob", "", "/again"+fmt.Sprint(len(r.em.signals)))); len(out) != 1 || out[0].Email != "bob@acme.test" {
			t.Fatalf("bob's event: %+v", out)
		}
	}
	check(r.core, r.st)
	if out := r.event(tn, identifyAs("a-bob2", "", "bob@acme.test")); len(out) != 2 || out[1].Status != schemas.StatusLinked {
		t.Fatalf("bob's held page not rehydrated: %+v", out)
	}
	// Links naming the erased (an echo of an old link, a replayed one) are ignored.
	if err := r.core.ApplyLink(r.st, r.em, &schemas.IdentityLink{Tenant: tn, IDKind: "anonymous", ID: "a-other",
		Email: "ann@acme.test", LinkedAt: r.now}); err != nil {
		t.Fatal(err)
	}
	if r.st[string(identityKey(tn, visitor{"anonymous", "a-other"}))] != nil {
		t.Error("a link to the erased email was applied")
	}

	// A restart: a new core over the same state, without the requests in memory: what this partition learnt
	// (ann's ids, the email of u-dan) is in the state.
	states := r.st
	restarted := NewCore(CoreConfig{Now: func() time.Time { return r.now }})
	suppressed(restarted, states, "after a restart: ann by userId", pageOf("", "u-ann", "/restart"))
	suppressed(restarted, states, "after a restart: dan's email", identifyAs("a-dan2", "", "dan@acme.test"))
	suppressed(restarted, states, "after a restart: ann's device", pageOf("a-ann2", "", "/restart"))

	// A state restored from nothing (its erasures applied again in the runner) still has the requests.
	fresh := NewCore(CoreConfig{Erased: set, Now: func() time.Time { return r.now }})
	fresh.SetErasedState(false)
	suppressed(fresh, memState{}, "fresh state: ann by email", identifyAs("a-x", "", "ann@acme.test"))
	suppressed(fresh, memState{}, "fresh state: carl", pageOf("a-carl", "", "/c"))
}

// TestErasureByIDReachesTheLinkedEmail: a request naming only Ann's anonymousId. Her anonymousId's partition
// (an identify with her anonymousId and userId) erases both and publishes a request for her email; another
// partition, which knows her userId's link and a second device's but not the named anonymousId, erases nothing
// for the first request and both ids for the published one. No request is published for an email already named.
func TestErasureByIDReachesTheLinkedEmail(t *testing.T) {
	const tn = "acme"
	p1 := newRig(t, nil)
	p1.event(tn, identifyAs("a-ann", "u-ann", "ann@acme.test"))
	p2 := newRig(t, nil)
	for _, id := range []visitor{{"user", "u-ann"}, {"anonymous", "a-ann2"}} {
		if err := p2.core.ApplyLink(p2.st, p2.em, &schemas.IdentityLink{Tenant: tn, IDKind: id.kind, ID: id.id,
			Email: "ann@acme.test", LinkedAt: p2.now, SignalID: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	req := &schemas.Erasure{Tenant: tn, RequestID: "r1", AnonymousID: "a-ann"}
	em1, em2 := &erasureRecorder{recorder: p1.em}, &erasureRecorder{recorder: p2.em}
	if err := p1.core.Erase(p1.st, em1, req); err != nil {
		t.Fatal(err)
	}
	if err := p2.core.Erase(p2.st, em2, req); err != nil {
		t.Fatal(err)
	}
	if len(em1.requests) != 1 || em1.requests[0].Email != "ann@acme.test" || em1.requests[0].RequestID != "r1/linked" {
		t.Fatalf("published %+v, want one request for ann's email", em1.requests)
	}
	slices.Sort(em1.tombstones)
	if !slices.Equal(em1.tombstones, []string{"acme|a-ann", "acme|u-ann"}) {
		t.Fatalf("the anonymousId's partition tombstoned %v", em1.tombstones)
	}
	if len(em2.tombstones) != 0 || len(em2.requests) != 0 || p2.st[string(identityKey(tn, visitor{"user", "u-ann"}))] == nil {
		t.Fatalf("the other partition erased %v for a request it cannot resolve", em2.tombstones)
	}
	if err := p2.core.Erase(p2.st, em2, &em1.requests[0]); err != nil {
		t.Fatal(err)
	}
	slices.Sort(em2.tombstones)
	if !slices.Equal(em2.tombstones, []string{"acme|a-ann2", "acme|u-ann"}) || len(em2.requests) != 0 {
		t.Fatalf("the published request: tombstones %v, requests %+v", em2.tombstones, em2.requests)
	}
	if out := p2.event(tn, pageOf("a-ann2", "", "/again")); len(out) != 0 {
		t.Fatalf("ann's second device emitted after the published request: %+v", out)
	}
}
