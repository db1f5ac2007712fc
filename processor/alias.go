package processor

import (
	"encoding/binary"
	"slices"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// Aliases carry "anonymousId A was seen with userId U" to the partition that owns U, for the case the identity
// flow alone misses: a visitor whose events carry both ids but who was identified (with email) on another device.
// The link for U then reaches U's partition only, never A's, and A's cold signals would stay cold. So when a cold
// event carries both ids, the processor sends the pair once (per dedup window) on its internal aliases topic,
// partitioned like U; U's partition remembers the aliases of U (the last maxAliases) and whenever U is or becomes
// linked, emits an IdentityLink for each alias A, which reaches A's partition and rehydrates it.

// maxAliases bounds the anonymousIds remembered per userId (the most recent ones are kept).
const maxAliases = 32

const (
	prefixAliases   = 'a' // a tenant 0 userId -> aliasList
	prefixAliasSent = 'e' // e tenant 0 anonymousId 0 userId -> first sent (ms): the pair was sent
)

// AliasEmitter is the optional part of an Emitter that sends alias pairs to the partition owning userID.
// Without it (tests, benchmarks) aliases are not propagated.
type AliasEmitter interface {
	Alias(tenant, userID, anonymousID string)
}

func aliasesKey(tenant, userID string) []byte { return stateKey(prefixAliases, tenant, userID) }

func aliasSentKey(tenant, anon, user string) []byte {
	return stateKey(prefixAliasSent, tenant, anon, "\x00", user)
}

func encodeAliases(ids []string) []byte {
	n := 1
	for _, id := range ids {
		n += binary.MaxVarintLen64 + len(id)
	}
	b := make([]byte, 0, n)
	b = append(b, valueFormat)
	for _, id := range ids {
		b = appendString(b, id)
	}
	return b
}

func decodeAliases(b []byte) ([]string, error) {
	r := newValueReader(b)
	var ids []string
	for r.err == nil && len(r.b) > 0 {
		ids = append(ids, string(r.bytes()))
	}
	return ids, r.err
}

// noteAlias sends the pair (anon, user) to user's partition, once per dedup window: the anonymousId of a cold
// event that carries both ids, or the previousId of an alias call.
func (c *Core) noteAlias(st State, em Emitter, tenant, anon, user string, now time.Time) error {
	ae, ok := em.(AliasEmitter)
	if !ok || !LegalID(anon) || !LegalID(user) {
		return nil
	}
	k := aliasSentKey(tenant, anon, user)
	if b, err := st.Get(k); err != nil || b != nil {
		return err
	}
	ae.Alias(tenant, user, anon)
	st.Set(k, dedupEntry{FirstSeenMs: now.UnixMilli()}.encode())
	c.Stats.AliasesOut++
	return nil
}

// ApplyAlias records, on the partition that owns userID, that anonymousID was seen with it, and links the alias
// at once when userID already has a lead.
func (c *Core) ApplyAlias(st State, em Emitter, tenant, userID, anonymousID string) error {
	if !LegalID(userID) || !LegalID(anonymousID) {
		return nil
	}
	k := aliasesKey(tenant, userID)
	var ids []string
	if b, err := st.Get(k); err != nil {
		return err
	} else if b != nil {
		if ids, err = decodeAliases(b); err != nil {
			return err
		}
	}
	if i := slices.Index(ids, anonymousID); i >= 0 {
		ids = slices.Delete(ids, i, i+1)
	}
	ids = append(ids, anonymousID)
	if len(ids) > maxAliases {
		ids = ids[len(ids)-maxAliases:]
	}
	st.Set(k, encodeAliases(ids))
	c.Stats.AliasesIn++
	u, ok, err := c.getIdentity(st, tenant, visitor{schemas.IDKindUser, userID})
	if err != nil || !ok || u.Email == "" {
		return err
	}
	c.linkAlias(em, tenant, userID, anonymousID, u)
	return nil
}

// linkAliases emits a link for every alias of a userId that has just been linked on this partition.
func (c *Core) linkAliases(st State, em Emitter, tenant, userID string, u identity) error {
	b, err := st.Get(aliasesKey(tenant, userID))
	if err != nil || b == nil {
		return err
	}
	ids, err := decodeAliases(b)
	if err != nil {
		return err
	}
	for _, a := range ids {
		c.linkAlias(em, tenant, userID, a, u)
	}
	return nil
}

func (c *Core) linkAlias(em Emitter, tenant, userID, anon string, u identity) {
	em.Link(&schemas.IdentityLink{Tenant: tenant, IDKind: schemas.IDKindAnonymous, ID: anon, Email: u.Email,
		AnonymousID: anon, UserID: userID, Traits: u.Traits, // ordered as the userId's link
		LinkedAt: time.UnixMilli(u.LinkedAtMs).UTC(), SignalID: u.LinkSignal})
	c.Stats.LinksOut++
}
