package processor

import (
	"errors"
	"fmt"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// ErrPoison marks an input record the core can never process (undecodable, a payload that is not a JSON
// object). The runner sends it to the dead-letter topic and moves on; every other error from the core is a state
// failure that stops the batch.
var ErrPoison = errors.New("poison record")

// Emitter receives the core's outputs for one batch.
type Emitter interface {
	// Signal emits a resolved signal under the record key of its input; enc is its schemas.Signals encoding
	// (the core encodes once, for the output and for cold storage). key and enc may be kept; s is only valid
	// during the call (the core reuses it).
	Signal(key []byte, s *schemas.Signal, enc []byte)
	// Link emits an identity link to the identities topic (keyed tenant|id).
	Link(l *schemas.IdentityLink)
}

// CoreConfig tunes the semantics of the core; zero values take the defaults documented on Config.
type CoreConfig struct {
	DedupWindow       time.Duration
	MaxHeldPerVisitor int
	MaxHeldAge        time.Duration
	Mapper            Mapper           // nil: no mapping rules
	Erased            ErasedSet        // nil: only the erasures applied to the state (Erase) suppress
	Now               func() time.Time // nil: time.Now
}

// Stats counts what the core did; the runner adds a batch's stats to the metrics only once the batch committed.
type Stats struct {
	Events         int64 // raw events processed (duplicates included)
	Duplicates     int64 // dropped: same content seen at another offset within the window
	Reemitted      int64 // same offset read again (replay): emitted again with a higher version
	Cold           int64 // signals emitted cold
	Linked         int64 // signals emitted linked (at once, not by rehydration)
	Rehydrated     int64 // held signals emitted again linked
	NoVisitor      int64 // cold signals without a legal id: emitted, never held
	HeldEvicted    int64 // held signals dropped because their visitor exceeded MaxHeldPerVisitor
	HeldExpired    int64 // held signals dropped because they were older than MaxHeldAge
	HeldUnreadable int64 // held records rehydration could not read: dead-lettered and dropped
	DedupExpired   int64 // dedup entries removed after the window
	SweepExamined  int64 // committed state keys the expiry sweep examined
	LinksOut       int64 // identity links emitted
	LinksApplied   int64 // identity links applied from the identities topic
	LinksStale     int64 // identity links ignored because a newer link was known
	AliasesOut     int64 // (anonymousId, userId) pairs sent to the userId's partition
	AliasesIn      int64 // alias pairs recorded on the userId's partition
	LegacyLookups  int64 // dedup lookups of the other id of a signal (the upgrade to the contract; see dedupIDs)
	LegacyHits     int64 // ... that found the signal under it
	Suppressed     int64 // events of an erased person: not emitted
	Erasures       int64 // erasure requests applied to a partition's state
	ErasedIDs      int64 // ids whose state an erasure dropped (and tombstoned on identities)
	ErasedHeld     int64 // held signals an erasure dropped
	ErasuresOut    int64 // requests published for the email linked to a request's ids
}

// Add adds o to s.
func (s *Stats) Add(o Stats) {
	s.Events += o.Events
	s.Duplicates += o.Duplicates
	s.Reemitted += o.Reemitted
	s.Cold += o.Cold
	s.Linked += o.Linked
	s.Rehydrated += o.Rehydrated
	s.NoVisitor += o.NoVisitor
	s.HeldEvicted += o.HeldEvicted
	s.HeldExpired += o.HeldExpired
	s.HeldUnreadable += o.HeldUnreadable
	s.DedupExpired += o.DedupExpired
	s.SweepExamined += o.SweepExamined
	s.LinksOut += o.LinksOut
	s.LinksApplied += o.LinksApplied
	s.LinksStale += o.LinksStale
	s.AliasesOut += o.AliasesOut
	s.AliasesIn += o.AliasesIn
	s.LegacyLookups += o.LegacyLookups
	s.LegacyHits += o.LegacyHits
	s.Suppressed += o.Suppressed
	s.Erasures += o.Erasures
	s.ErasedIDs += o.ErasedIDs
	s.ErasedHeld += o.ErasedHeld
	s.ErasuresOut += o.ErasuresOut
}

// Core is the processing logic without Kafka: dedup, identity, cold storage and rehydration over a State, with
// outputs to an Emitter. It is not safe for concurrent use; the runner uses one per processor.
type Core struct {
	cfg CoreConfig
	// reader turns the event's record into an Event; rreader the held records rehydration reads while the
	// event is still in use.
	reader, rreader eventReader
	// reg frames the signals the core encodes for a schema registry (nil: single-object encoding).
	reg *schemas.Registry
	// legacyIDs turns on the second dedup lookup of every new signal (SetLegacyLookups).
	legacyIDs bool
	// noErasedState skips the lookups of erased ids in the state (SetErasedState).
	noErasedState bool
	// key buffers for the hot path: State copies the keys it keeps, so a key needs to live only until the call
	// that uses it returns (kbuf), or until the end of ProcessEvent (dkbuf: the event's dedup key)
	kbuf, dkbuf, hkbuf []byte
	unlinked           []visitor // resolve's result
	// enrich is the lead enrichment a rule mapped into the event being processed (nil: none)
	enrich map[string]string
	// the signal being built: sig for the event, rsig for the held signals it rehydrates
	sig, rsig schemas.Signal
	// Stats accumulates until the caller resets it.
	Stats Stats
}

// NewCore returns a core with cfg's zero values defaulted.
func NewCore(cfg CoreConfig) *Core {
	if cfg.DedupWindow <= 0 {
		cfg.DedupWindow = DefaultDedupWindow
	}
	if cfg.MaxHeldPerVisitor <= 0 {
		cfg.MaxHeldPerVisitor = DefaultMaxHeldPerVisitor
	}
	if cfg.MaxHeldAge <= 0 {
		cfg.MaxHeldAge = DefaultMaxHeldAge
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Core{cfg: cfg}
}

// SetLegacyLookups makes every new signal of the records processed from now on also be looked up under its
// legacy id (contract.LegacySignalID), as the state of a partition may hold entries written before the upgrade
// to the event contract. The runner turns it on per partition for one dedup window after the upgrade.
func (c *Core) SetLegacyLookups(on bool) { c.legacyIDs = on }

// ProcessEvent processes one signals.raw record read at (partition, offset) with key. It returns an error wrapping
// ErrPoison for a record that can never be processed; st is untouched then.
func (c *Core) ProcessEvent(st State, em Emitter, partition int32, offset int64, key []byte, raw *schemas.RawEvent) error {
	now := c.cfg.Now().UTC().Truncate(time.Millisecond)
	ev, err := c.reader.read(raw)
	if err != nil {
		return err
	}
	c.Stats.Events++
	ids := ev.ids()
	if gone, err := c.erasedEvent(st, ev.Tenant, ids, ev.Email); err != nil || gone {
		if gone {
			c.Stats.Suppressed++
		}
		return err
	}

	id, entry, seen, err := c.dedupIDs(st, ev, now)
	if err != nil {
		return err
	}
	version := nextVersion(0, now)
	if seen {
		if entry.Offset != offset {
			c.Stats.Duplicates++
			return nil
		}
		// The same offset again is a replay of the input, not a second delivery: emit again, one version up.
		version = nextVersion(entry.Version, now)
		c.Stats.Reemitted++
	} else {
		entry = dedupEntry{FirstSeenMs: now.UnixMilli(), Offset: offset}
	}
	c.dkbuf = appendStateKey(c.dkbuf[:0], prefixDedup, ev.Tenant, id)
	dk := c.dkbuf // until the end of this call; rehydration makes its own keys

	sig, email := c.signalOf(&c.sig, ev, id, partition, offset, version, now)
	if email != ev.Email {
		// A rule's email: the person it names may be erased.
		if gone, err := c.erased(st, ev.Tenant, ErasedKindEmail, email); err != nil || gone {
			if gone {
				c.Stats.Suppressed++
			}
			return err
		}
	}
	c.enrich = nil
	if sig.Mapped != nil && ev.Type != "group" {
		c.enrich = leadEnrichment(sig.Mapped) // the lead's identity gets what the rule mapped, too
	}
	if entry.First.set {
		entry.First.apply(sig) // a replay: the first version's key columns, whatever the derivation says now
	} else {
		entry.First = pinOf(sig)
	}
	switch {
	case ev.Type == "group":
		// A group call describes a group: it never creates or changes a lead, and its traits are the group's.
		// The visitor remembers the group it joined, so its later signals carry it.
		if err := c.recordGroup(st, ev, ids); err != nil {
			return err
		}
	case email != "" && len(ids) > 0:
		if err := c.link(st, em, ev, ids, email, now); err != nil {
			return err
		}
		sig.Status, sig.Email = schemas.StatusLinked, email
	case ev.Type == "identify" && len(ids) > 0:
		if err := c.recordTraits(st, ev, ids); err != nil {
			return err
		}
	case email != "":
		// An email without any legal visitor id: the signal is the lead's, but there is nothing to link.
		sig.Status, sig.Email = schemas.StatusLinked, email
	}
	unlinked, err := c.resolve(st, ev.Tenant, ids, sig)
	if err != nil {
		return err
	}
	if email == "" && sig.Email != "" {
		// Linked through its ids to a lead erased since (an erasure this partition has not applied yet).
		if gone, err := c.erased(st, ev.Tenant, ErasedKindEmail, sig.Email); err != nil || gone {
			if gone {
				c.Stats.Suppressed++
			}
			return err
		}
	}
	if ev.Type != "group" && sig.Status == schemas.StatusLinked && email == "" {
		// Linked through one of its ids (resolve): the event joins the unlinked ones to the lead, as an identify
		// would, and a rule's enrichment reaches the lead's identity through every id linked to that lead.
		targets := unlinked
		if c.enrich != nil {
			if targets, err = c.sameLead(st, ev.Tenant, ids, sig.Email); err != nil {
				return err
			}
		}
		if len(targets) > 0 {
			if err := c.link(st, em, ev, targets, sig.Email, now); err != nil {
				return err
			}
		}
	} else if c.enrich != nil && sig.Status == schemas.StatusCold && ev.Type != "identify" && len(ids) > 0 {
		// No lead yet: keep the enrichment with the visitor's traits for when it is linked.
		if err := c.recordTraits(st, ev, ids); err != nil {
			return err
		}
	}
	sig.EmailDomain = contract.EmailDomain(sig.Email)
	enc, err := schemas.EncodeSignalWith(c.reg, sig)
	if err != nil {
		return fmt.Errorf("encoding signal: %w", err)
	}
	if sig.Status == schemas.StatusCold {
		c.Stats.Cold++
		v, ok := ev.visitor()
		switch {
		case !ok:
			c.Stats.NoVisitor++
		case !seen:
			if err := c.hold(st, v, key, sig, ev, now); err != nil {
				return err
			}
		}
		if LegalID(ev.AnonymousID) && LegalID(ev.UserID) {
			if err := c.noteAlias(st, em, ev.Tenant, ev.AnonymousID, ev.UserID, now); err != nil {
				return err
			}
		}
	} else {
		c.Stats.Linked++
	}
	if ev.Type == "alias" && LegalID(ev.PreviousID) && LegalID(ev.UserID) && ev.PreviousID != ev.UserID {
		// alias: previousId is the same person as userId, linked with it (on the userId's partition) now or later.
		if err := c.noteAlias(st, em, ev.Tenant, ev.PreviousID, ev.UserID, now); err != nil {
			return err
		}
	}
	em.Signal(key, sig, enc)
	entry.Version = version
	st.Set(dk, entry.encode())
	return nil
}

// dedupIDs finds the event's dedup entry and decides the id its signal carries. Before the event contract the
// processor computed ids another way (contract.LegacySignalID), and a signal keeps the id it was first emitted
// with: so a raw_event.v1 record (written before the upgrade, first processed under the legacy id) is emitted
// under its legacy id, and its entry is also looked up under the contract's id (an edge upgraded first may
// have sent its retry); a record the contract derived is looked up under its own id and, while the partition's
// state may hold entries from before the upgrade (SetLegacyLookups), under its legacy id. An entry found under
// the other id decides: the signal keeps that id.
func (c *Core) dedupIDs(st State, ev *Event, now time.Time) (id string, entry dedupEntry, seen bool, err error) {
	id, other := ev.SignalID, ""
	switch {
	case ev.legacy:
		if l := ev.legacyID(); l != "" {
			id, other = l, ev.SignalID
		}
	case c.legacyIDs:
		other = "?" // computed only if the contract's id is not found: it costs a pass over the payload
	}
	entry, seen, err = c.dedup(st, ev.Tenant, id, now)
	if err != nil || seen || other == "" {
		return id, entry, seen, err
	}
	if other == "?" {
		if other = ev.legacyID(); other == "" {
			return id, entry, seen, nil
		}
	}
	c.Stats.LegacyLookups++
	e2, seen2, err := c.dedup(st, ev.Tenant, other, now)
	if err != nil || !seen2 {
		return id, entry, false, err
	}
	c.Stats.LegacyHits++
	return other, e2, true, nil
}

// signalOf builds the signal of ev into sig, cold, under id, with the mapping rules applied, and returns the lead
// email the event carries (the rule's email field first; none for a group call).
func (c *Core) signalOf(sig *schemas.Signal, ev *Event, id string, partition int32, offset, version int64, now time.Time) (*schemas.Signal, string) {
	*sig = schemas.Signal{
		Tenant: ev.Tenant, SignalID: id, Version: version, Status: schemas.StatusCold,
		Source: ev.Source, Type: ev.Type, Event: ev.Name(), MessageID: ev.MessageID,
		AnonymousID: ev.AnonymousID, UserID: ev.UserID, URL: ev.URL, PageName: ev.PageName,
		Properties: ev.Properties, Traits: ev.Traits, // Mapped: nil unless a rule maps fields; it encodes as {}
		EventTime: ev.EventTime, ReceivedAt: ev.ReceivedAt, ProcessedAt: now,
		RawPartition: partition, RawOffset: offset, Payload: ev.Payload,
		GroupID: ev.GroupID, PreviousID: ev.PreviousID, EventContext: ev.EventContext,
	}
	email := ev.Email
	if c.cfg.Mapper != nil {
		ruleID, name, fields := c.cfg.Mapper.Map(ev.Tenant, ev)
		sig.RuleID, sig.MappedName = ruleID, name
		if fields != nil {
			sig.Mapped = fields
			if em := contract.NormalizeEmail(fields["email"]); em != "" {
				email = em
			}
		}
	}
	if ev.Type == "group" {
		email = ""
	}
	return sig, email
}

// dedup returns the live dedup entry of signal id; an entry older than the window counts as absent.
func (c *Core) dedup(st State, tenant, id string, now time.Time) (dedupEntry, bool, error) {
	c.kbuf = appendStateKey(c.kbuf[:0], prefixDedup, tenant, id)
	v, err := st.Get(c.kbuf)
	if err != nil || v == nil {
		return dedupEntry{}, false, err
	}
	e, err := decodeDedup(v)
	if err != nil {
		return e, false, err
	}
	return e, now.UnixMilli()-e.FirstSeenMs <= c.cfg.DedupWindow.Milliseconds(), nil
}

// resolve completes sig from what the visitor's ids know: a cold signal is linked to the lead of the first id
// that has one (and a traitless one takes the lead's traits), and a signal without a group of its own takes the
// group the visitor last joined. When it linked the signal, it returns the event's other ids that have no lead
// (valid until the next resolve): an event carrying an anonymousId and a userId says they are one person, so
// the caller links those ids to the lead as well (and rehydrates what they hold), the outcome the alias path
// gives when the linked id lives on another partition.
func (c *Core) resolve(st State, tenant string, ids []visitor, sig *schemas.Signal) ([]visitor, error) {
	cold, needGroup := sig.Status == schemas.StatusCold, sig.GroupID == ""
	if !cold && !needGroup {
		return nil, nil
	}
	wasCold := cold
	c.unlinked = c.unlinked[:0]
	for _, v := range ids {
		if !cold && !needGroup && !wasCold {
			return nil, nil
		}
		id, ok, err := c.leadOf(st, tenant, v)
		if err != nil {
			return nil, err
		}
		if !ok || id.Email == "" {
			c.unlinked = append(c.unlinked, v)
		}
		if !ok {
			continue
		}
		if needGroup && id.GroupID != "" {
			sig.GroupID, needGroup = id.GroupID, false
		}
		if cold && id.Email != "" {
			sig.Status, sig.Email, cold = schemas.StatusLinked, id.Email, false
			if sig.Traits == "{}" && id.Traits != "" && sig.Type != "group" {
				sig.Traits = id.Traits
			}
		}
	}
	if cold {
		return nil, nil
	}
	return c.unlinked, nil
}

// sameLead returns the ids without a lead or linked to email.
func (c *Core) sameLead(st State, tenant string, ids []visitor, email string) ([]visitor, error) {
	var out []visitor
	for _, v := range ids {
		id, ok, err := c.leadOf(st, tenant, v)
		if err != nil {
			return nil, err
		}
		if !ok || id.Email == "" || id.Email == email {
			out = append(out, v)
		}
	}
	return out, nil
}

func (c *Core) getIdentity(st State, tenant string, v visitor) (identity, bool, error) {
	return c.readIdentity(st, tenant, v, true)
}

// leadOf is getIdentity for reading only (resolve, rehydration): without the link's signal id.
func (c *Core) leadOf(st State, tenant string, v visitor) (identity, bool, error) {
	return c.readIdentity(st, tenant, v, false)
}

func (c *Core) readIdentity(st State, tenant string, v visitor, withLink bool) (identity, bool, error) {
	c.kbuf = appendStateKey(c.kbuf[:0], prefixIdentity, tenant, v.kind, ":", v.id)
	b, err := st.Get(c.kbuf)
	if err != nil || b == nil {
		return identity{}, false, err
	}
	id, err := decodeIdentityLink(b, withLink)
	return id, err == nil, err
}
