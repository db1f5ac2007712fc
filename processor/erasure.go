package processor

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// Erasure of a person (schemas.Erasure, the signals.erasures topic). What the core does with one request on one
// partition (Erase), and how it keeps the person out afterwards (erased):
//
//   - the person is the request's email and ids, the email of each named id's identity here, the ids whose
//     identity here is linked to one of those emails, and the anonymousIds remembered as aliases of those userIds;
//     an email found that the request did not name is published as a request of its own (ErasureEmitter), so
//     that the partitions which know that email's other ids, but not the named ones, erase them too;
//   - for each of their ids it deletes the identity, the held (cold) signals and their counter, the alias list
//     and the alias-sent marks of the pairs it can name, and, for an id whose identity it held, emits an identity
//     tombstone (key tenant|id), so the compacted identities topic forgets the link and the sink drops it from
//     leads;
//   - it records each id and email it found in the partition's state (x keys, through the changelog), so what it
//     learnt here (an id linked to the email, an email linked to an id) outlives the deleted identities, a
//     restart and a restore;
//   - from then on an event whose anonymousId, userId or lead email (its own, a rule's, or the one its ids
//     resolve to) is erased (the ErasedSet of every request, or the partition's x keys) is suppressed: not
//     emitted, no state written, counted in Stats.Suppressed; links and aliases naming them are ignored.
//
// Dedup entries stay (signal ids are hashes, not the person's data; they expire with the window).
//
//	x tenant 0 kind : id      erased id (kind anonymous or user) or email (kind email): erased at (ms)
const prefixErased = 'x'

// ErasedKindEmail is the kind under which an ErasedSet answers for an email (the others are schemas.IDKind*).
const ErasedKindEmail = "email"

// ErasedSet answers whether a tenant's id or email was named by an erasure request. The runner's is every
// request of signals.erasures (read whole at start, then followed); it must be safe to call from the processing
// loop while it is updated.
type ErasedSet interface {
	IsErased(tenant, kind, id string) bool
}

// StateScanner is the optional part of a State that walks the keys under a prefix (in any order) as the batch sees
// them (its own writes included, deletes left out). Erase uses it to find the ids linked to an erased email;
// without it only the ids the request names (and their own links) are erased.
type StateScanner interface {
	Scan(prefix []byte, fn func(key, value []byte) error) error
}

// TombstoneEmitter is the optional part of an Emitter that writes a tombstone (nil value) for tenant|id to the
// identities topic.
type TombstoneEmitter interface {
	Tombstone(tenant, id string)
}

// normalizeErasedEmail is the form of a request's email the core compares with leads: the contract's, else (an
// address the contract would not take as a lead) lower-cased and trimmed.
func normalizeErasedEmail(s string) string {
	if e := contract.NormalizeEmail(s); e != "" {
		return e
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// ErasureEmitter is the optional part of an Emitter that publishes an erasure request to signals.erasures: the
// email Erase found linked to a request that named only ids, so that every partition (and the sink) erases the
// ids linked to it, which only the email finds on the partitions that do not know the named ids.
type ErasureEmitter interface {
	Erasure(e *schemas.Erasure)
}

func erasedKey(tenant, kind, id string) []byte { return stateKey(prefixErased, tenant, kind, ":", id) }

// Erase applies one erasure request to the partition's state st (see the comment at prefixErased).
func (c *Core) Erase(st State, em Emitter, e *schemas.Erasure) error {
	tenant := e.Tenant
	now := c.cfg.Now().UTC().Truncate(time.Millisecond)
	emails := map[string]bool{}
	if email := normalizeErasedEmail(e.Email); email != "" {
		emails[email] = true
	}
	ids := map[visitor]bool{}
	if e.AnonymousID != "" {
		ids[visitor{schemas.IDKindAnonymous, e.AnonymousID}] = true
	}
	if e.UserID != "" {
		ids[visitor{schemas.IDKindUser, e.UserID}] = true
	}
	for v := range ids {
		id, ok, err := c.getIdentity(st, tenant, v)
		if err != nil {
			return err
		}
		if ok && id.Email != "" {
			emails[id.Email] = true
		}
	}
	if ee, ok := em.(ErasureEmitter); ok {
		named := normalizeErasedEmail(e.Email)
		for email := range emails {
			if email == named || (c.cfg.Erased != nil && c.cfg.Erased.IsErased(tenant, ErasedKindEmail, email)) {
				continue
			}
			ee.Erasure(&schemas.Erasure{Tenant: tenant, RequestID: e.RequestID + "/linked", Email: email,
				RequestedAt: e.RequestedAt})
			c.Stats.ErasuresOut++
		}
	}
	if sc, ok := st.(StateScanner); ok && len(emails) > 0 {
		prefix := stateKey(prefixIdentity, tenant)
		err := sc.Scan(prefix, func(k, b []byte) error {
			id, err := decodeIdentityLink(b, false)
			if err != nil || !emails[id.Email] {
				return nil // an unreadable identity is not the person's to decide here
			}
			kind, vid, ok := strings.Cut(string(k[len(prefix):]), ":")
			if ok {
				ids[visitor{kind, vid}] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	// The anonymousIds remembered with an erased userId are the same person's devices.
	for v := range ids {
		if v.kind != schemas.IDKindUser {
			continue
		}
		b, err := st.Get(aliasesKey(tenant, v.id))
		if err != nil {
			return err
		}
		if b == nil {
			continue
		}
		anons, err := decodeAliases(b)
		if err != nil {
			return err
		}
		for _, a := range anons {
			ids[visitor{schemas.IDKindAnonymous, a}] = true
			st.Delete(aliasSentKey(tenant, a, v.id))
		}
		st.Delete(aliasesKey(tenant, v.id))
	}
	mark := binary.AppendVarint([]byte{valueFormat}, now.UnixMilli())
	te, _ := em.(TombstoneEmitter)
	for v := range ids {
		if !LegalID(v.id) {
			continue
		}
		ik := identityKey(tenant, v)
		linked, err := st.Get(ik)
		if err != nil {
			return err
		}
		if err := c.dropHeld(st, tenant, v); err != nil {
			return err
		}
		st.Set(erasedKey(tenant, v.kind, v.id), mark)
		if linked != nil {
			// Tombstoned by each partition that knew its identity (its own one does: it applies the id's links),
			// not by every partition a request reaches.
			st.Delete(ik)
			if te != nil {
				te.Tombstone(tenant, v.id)
			}
		}
		c.Stats.ErasedIDs++
	}
	for email := range emails {
		st.Set(erasedKey(tenant, ErasedKindEmail, email), mark)
	}
	c.Stats.Erasures++
	return nil
}

// dropHeld deletes the held signals of v and their counter, uncounted by the held metrics (they are erased, not
// evicted or expired).
func (c *Core) dropHeld(st State, tenant string, v visitor) error {
	ck := counterKey(tenant, v)
	b, err := st.Get(ck)
	if err != nil || b == nil {
		return err
	}
	cnt, err := decodeCounter(b)
	if err != nil {
		return err
	}
	for seq := cnt.First; seq < cnt.Next; seq++ {
		hk := heldKey(tenant, v, seq)
		if hb, err := st.Get(hk); err != nil {
			return err
		} else if hb != nil {
			st.Delete(hk)
			c.Stats.ErasedHeld++
		}
	}
	st.Delete(ck)
	return nil
}

// SetErasedState tells the core whether the state of the partition it processes next may hold erased ids and
// emails (x keys: an erasure was applied to it). Off, erased looks only at the ErasedSet, which saves one state
// lookup per id and email of every event on a partition no erasure ever touched. On by default.
func (c *Core) SetErasedState(on bool) { c.noErasedState = !on }

// erased reports whether the tenant's id of kind (or email, kind ErasedKindEmail) is erased: named by a request
// (the ErasedSet) or found linked to one on this partition (its x key).
func (c *Core) erased(st State, tenant, kind, id string) (bool, error) {
	if id == "" {
		return false, nil
	}
	if c.cfg.Erased != nil && c.cfg.Erased.IsErased(tenant, kind, id) {
		return true, nil
	}
	if c.noErasedState {
		return false, nil
	}
	c.kbuf = appendStateKey(c.kbuf[:0], prefixErased, tenant, kind, ":", id)
	b, err := st.Get(c.kbuf)
	return b != nil, err
}

// erasedEvent reports whether an event of the tenant with ids, or lead email, belongs to an erased person.
func (c *Core) erasedEvent(st State, tenant string, ids []visitor, email string) (bool, error) {
	for _, v := range ids {
		if ok, err := c.erased(st, tenant, v.kind, v.id); err != nil || ok {
			return ok, err
		}
	}
	return c.erased(st, tenant, ErasedKindEmail, email)
}
