package processor

import (
	"encoding/json"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// link links every id of ev to the lead email: the identity is stored on this partition (also for a userId another
// partition owns, so this partition resolves it at once), held signals of each id are rehydrated here, and an
// IdentityLink per id goes to the identities topic, where the partition that owns the id picks it up.
func (c *Core) link(st State, em Emitter, ev *Event, ids []visitor, email string, now time.Time) error {
	traits := ev.Traits // and the rule's enrichment (c.enrich), merged below
	// The link's order: the event's time as the signal carries it (pinned at its first version, so a replay
	// orders it where it was), then its id.
	at, sid := c.sig.EventTime.UnixMilli(), c.sig.SignalID
	for _, v := range ids {
		cur, ok, err := c.getIdentity(st, ev.Tenant, v)
		if err != nil {
			return err
		}
		if ok && cur.Email != "" && !laterLink(at, sid, cur) {
			c.Stats.LinksStale++ // an older event (late, or replayed) than the one the id is linked by
			continue
		}
		t := traits
		if t == "{}" && ok && cur.Traits != "" {
			t = cur.Traits
		}
		same := traits == "{}" || traits == cur.Traits
		if c.enrich != nil {
			t = mergeTraits(t, c.enrich)
			same = t == cur.Traits
		}
		if ok && cur.Email == email && same {
			continue // nothing new: do not churn state or the identities topic
		}
		id := identity{LinkedAtMs: at, Email: email, Traits: t, GroupID: cur.GroupID, LinkSignal: sid}
		st.Set(identityKey(ev.Tenant, v), id.encode())
		if err := c.rehydrate(st, em, ev.Tenant, v, email, now); err != nil {
			return err
		}
		if v.kind == schemas.IDKindUser {
			if err := c.linkAliases(st, em, ev.Tenant, v.id, id); err != nil {
				return err
			}
		}
		l := &schemas.IdentityLink{
			Tenant: ev.Tenant, IDKind: v.kind, ID: v.id, Email: email, Traits: t,
			LinkedAt: time.UnixMilli(at).UTC(), SignalID: sid,
		}
		if LegalID(ev.AnonymousID) {
			l.AnonymousID = ev.AnonymousID
		}
		if LegalID(ev.UserID) {
			l.UserID = ev.UserID
		}
		em.Link(l)
		c.Stats.LinksOut++
	}
	return nil
}

// recordTraits stores the traits of an identify without email: no lead, but enrichment for a later link.
func (c *Core) recordTraits(st State, ev *Event, ids []visitor) error {
	if ev.Traits == "{}" && c.enrich == nil {
		return nil
	}
	for _, v := range ids {
		cur, _, err := c.getIdentity(st, ev.Tenant, v)
		if err != nil {
			return err
		}
		t := ev.Traits
		if c.enrich != nil {
			if t == "{}" && cur.Traits != "" {
				t = cur.Traits // a rule's enrichment of an event without traits: merged into what is known
			}
			t = mergeTraits(t, c.enrich)
		}
		if cur.Traits == t {
			continue
		}
		cur.Traits = t
		st.Set(identityKey(ev.Tenant, v), cur.encode())
	}
	return nil
}

// enrichmentFields are the fields of a rule's map that enrich the lead (besides its email).
var enrichmentFields = [...]string{"name", "company", "title"}

// leadEnrichment returns the lead enrichment a rule mapped into a signal (nil when none).
func leadEnrichment(mapped map[string]string) map[string]string {
	var out map[string]string
	for _, f := range enrichmentFields {
		if v := mapped[f]; v != "" {
			if out == nil {
				out = make(map[string]string, len(enrichmentFields))
			}
			out[f] = v
		}
	}
	return out
}

// mergeTraits returns the JSON object traits with the fields of enrich set (as strings, over what traits says:
// an operator's rule outranks the event). Keys come out sorted; traits that are not an object are replaced.
func mergeTraits(traits string, enrich map[string]string) string {
	m := map[string]json.RawMessage{}
	_ = json.Unmarshal([]byte(traits), &m) // not an object: only the enrichment
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	for k, v := range enrich {
		b, _ := json.Marshal(v)
		m[k] = b
	}
	b, err := json.Marshal(m)
	if err != nil {
		return traits
	}
	return string(b)
}

// recordGroup remembers, for each id of the visitor, the group a group call joined it to, so the visitor's later
// signals carry it. A group call never touches the lead or the person's traits.
func (c *Core) recordGroup(st State, ev *Event, ids []visitor) error {
	if ev.GroupID == "" || !LegalID(ev.GroupID) {
		return nil
	}
	for _, v := range ids {
		cur, _, err := c.getIdentity(st, ev.Tenant, v)
		if err != nil {
			return err
		}
		if cur.GroupID == ev.GroupID {
			continue
		}
		cur.GroupID = ev.GroupID
		st.Set(identityKey(ev.Tenant, v), cur.encode())
	}
	return nil
}

// laterLink reports whether a link made by the event at event time ms with signal id sid comes after cur's
// link. Links are ordered by the linking event's time (the contract's corrected time, which a replay derives
// again the same), ties broken by signal id: deterministic, the same on every instance and on replay, whatever
// the order links are processed or read back in. (The processor's clock used to order them: a replayed old
// identify then re-linked a visitor to the old email, and clock skew between instances decided between links.)
func laterLink(ms int64, sid string, cur identity) bool {
	if ms != cur.LinkedAtMs {
		return ms > cur.LinkedAtMs
	}
	return sid > cur.LinkSignal
}

// ApplyLink applies an IdentityLink read from the identities topic to the partition that owns its id: the id is
// linked to the lead from now on and its held signals are rehydrated. A link not later (laterLink) than the one
// known is ignored, so echoes of this processor's own links and reordered or replayed history change nothing.
func (c *Core) ApplyLink(st State, em Emitter, l *schemas.IdentityLink) error {
	email := contract.NormalizeEmail(l.Email)
	if email == "" || !LegalID(l.ID) || (l.IDKind != schemas.IDKindAnonymous && l.IDKind != schemas.IDKindUser) {
		return nil
	}
	v := visitor{l.IDKind, l.ID}
	cur, ok, err := c.getIdentity(st, l.Tenant, v)
	if err != nil {
		return err
	}
	if ok && cur.Email != "" && !laterLink(l.LinkedAt.UnixMilli(), l.SignalID, cur) {
		c.Stats.LinksStale++
		return nil
	}
	traits := l.Traits
	if traits == "" {
		traits = "{}"
	}
	id := identity{LinkedAtMs: l.LinkedAt.UnixMilli(), Email: email, Traits: traits, GroupID: cur.GroupID,
		LinkSignal: l.SignalID}
	st.Set(identityKey(l.Tenant, v), id.encode())
	c.Stats.LinksApplied++
	if err := c.rehydrate(st, em, l.Tenant, v, email, c.cfg.Now().UTC().Truncate(time.Millisecond)); err != nil {
		return err
	}
	if v.kind == schemas.IDKindUser {
		return c.linkAliases(st, em, l.Tenant, v.id, id)
	}
	return nil
}
