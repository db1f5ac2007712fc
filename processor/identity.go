package processor

import (
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// link links every id of ev to the lead email: the identity is stored on this partition (also for a userId another
// partition owns, so this partition resolves it at once), held signals of each id are rehydrated here, and an
// IdentityLink per id goes to the identities topic, where the partition that owns the id picks it up.
func (c *Core) link(st State, em Emitter, ev *Event, ids []visitor, email string, now time.Time) error {
	traits := ev.Traits
	for _, v := range ids {
		cur, ok, err := c.getIdentity(st, ev.Tenant, v)
		if err != nil {
			return err
		}
		if ok && cur.Email == email && (traits == "{}" || traits == cur.Traits) {
			continue // nothing new: do not churn state or the identities topic
		}
		t := traits
		if t == "{}" && ok && cur.Traits != "" {
			t = cur.Traits
		}
		// Links of one id are ordered by LinkedAt; keep it strictly increasing per id so an echo of an older
		// link read back from the identities topic never overrides a newer one.
		at := now.UnixMilli()
		if ok && at <= cur.LinkedAtMs {
			at = cur.LinkedAtMs + 1
		}
		id := identity{LinkedAtMs: at, Email: email, Traits: t, GroupID: cur.GroupID}
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
			LinkedAt: time.UnixMilli(at).UTC(), SignalID: c.sig.SignalID,
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
	if ev.Traits == "{}" {
		return nil
	}
	for _, v := range ids {
		cur, _, err := c.getIdentity(st, ev.Tenant, v)
		if err != nil {
			return err
		}
		if cur.Traits == ev.Traits {
			continue
		}
		cur.Traits = ev.Traits
		st.Set(identityKey(ev.Tenant, v), cur.encode())
	}
	return nil
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

// ApplyLink applies an IdentityLink read from the identities topic to the partition that owns its id: the id is
// linked to the lead from now on and its held signals are rehydrated. A link older than (or equal to) the one
// known is ignored, so echoes of this processor's own links and reordered history change nothing.
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
	if ok && cur.LinkedAtMs >= l.LinkedAt.UnixMilli() {
		c.Stats.LinksStale++
		return nil
	}
	traits := l.Traits
	if traits == "" {
		traits = "{}"
	}
	id := identity{LinkedAtMs: l.LinkedAt.UnixMilli(), Email: email, Traits: traits, GroupID: cur.GroupID}
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
