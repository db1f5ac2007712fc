package processor

import (
	"errors"
	"fmt"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// ErrPoison marks an input record the core can never process (undecodable, not a JSON object). The runner sends
// it to the dead-letter topic and moves on; every other error from the core is a state failure that stops the batch.
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
	Now               func() time.Time // nil: time.Now
}

// Stats counts what the core did; the runner adds a batch's stats to the metrics only once the batch committed.
type Stats struct {
	Events       int64 // raw events processed (duplicates included)
	Duplicates   int64 // dropped: same content seen at another offset within the window
	Reemitted    int64 // same offset read again (replay): emitted again with a higher version
	Cold         int64 // signals emitted cold
	Linked       int64 // signals emitted linked (at once, not by rehydration)
	Rehydrated   int64 // held signals emitted again linked
	NoVisitor    int64 // cold signals without a legal id: emitted, never held
	HeldEvicted  int64 // held signals dropped because their visitor exceeded MaxHeldPerVisitor
	HeldExpired  int64 // held signals dropped because they were older than MaxHeldAge
	DedupExpired int64 // dedup entries removed after the window
	LinksOut     int64 // identity links emitted
	LinksApplied int64 // identity links applied from the identities topic
	LinksStale   int64 // identity links ignored because a newer link was known
	AliasesOut   int64 // (anonymousId, userId) pairs sent to the userId's partition
	AliasesIn    int64 // alias pairs recorded on the userId's partition
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
	s.DedupExpired += o.DedupExpired
	s.LinksOut += o.LinksOut
	s.LinksApplied += o.LinksApplied
	s.LinksStale += o.LinksStale
	s.AliasesOut += o.AliasesOut
	s.AliasesIn += o.AliasesIn
}

// Core is the processing logic without Kafka: dedup, identity, cold storage and rehydration over a State, with
// outputs to an Emitter. It is not safe for concurrent use; the runner uses one per processor.
type Core struct {
	cfg     CoreConfig
	scratch []byte
	parser  jparser
	// rehydration parses held payloads while the current event's tree is still in use
	rscratch []byte
	rparser  jparser
	// key buffers for the hot path: State copies the keys it keeps, so a key needs to live only until the call
	// that uses it returns (kbuf), or until the end of ProcessEvent (dkbuf: the event's dedup key)
	kbuf, dkbuf, hkbuf []byte
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

// ProcessEvent processes one signals.raw record read at (partition, offset) with key. It returns an error wrapping
// ErrPoison for a record that can never be processed; st is untouched then.
func (c *Core) ProcessEvent(st State, em Emitter, partition int32, offset int64, key []byte, raw *schemas.RawEvent) error {
	now := c.cfg.Now().UTC().Truncate(time.Millisecond)
	ev, scratch, err := c.parser.event(raw, c.scratch)
	c.scratch = scratch
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPoison, err)
	}
	c.Stats.Events++

	c.dkbuf = appendStateKey(c.dkbuf[:0], prefixDedup, ev.Tenant, ev.SignalID)
	dk := c.dkbuf // until the end of this call; rehydration makes its own keys
	entry, seen, err := c.dedup(st, dk, now)
	if err != nil {
		return err
	}
	version := int64(1)
	if seen {
		if entry.Offset != offset {
			c.Stats.Duplicates++
			return nil
		}
		// The same offset again is a replay of the input, not a second delivery: emit again, one version up.
		version = entry.Version + 1
		c.Stats.Reemitted++
	} else {
		entry = dedupEntry{FirstSeenMs: now.UnixMilli(), Offset: offset}
	}

	sig, email := c.signalOf(&c.sig, ev, partition, offset, version, now)
	if entry.First.set {
		entry.First.apply(sig) // a replay: the first version's key columns, whatever the derivation says now
	} else {
		entry.First = pinOf(sig)
	}
	ids := ev.ids()
	switch {
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
	if sig.Status == schemas.StatusCold {
		if err := c.resolve(st, ev.Tenant, ids, sig); err != nil {
			return err
		}
	}
	enc, err := schemas.EncodeSignal(sig)
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
			if err := c.hold(st, v, key, sig, now); err != nil {
				return err
			}
		}
		if err := c.noteAlias(st, em, ev, now); err != nil {
			return err
		}
	} else {
		c.Stats.Linked++
	}
	em.Signal(key, sig, enc)
	entry.Version = version
	st.Set(dk, entry.encode())
	return nil
}

// signalOf builds the signal of ev into sig, cold, with the mapping rules applied, and returns the lead email the event
// carries (the rule's email field first).
func (c *Core) signalOf(sig *schemas.Signal, ev *Event, partition int32, offset, version int64, now time.Time) (*schemas.Signal, string) {
	*sig = schemas.Signal{
		Tenant: ev.Tenant, SignalID: ev.SignalID, Version: version, Status: schemas.StatusCold,
		Source: ev.Source, Type: ev.Type, Event: ev.Name, MessageID: ev.MessageID,
		AnonymousID: ev.AnonymousID, UserID: ev.UserID, URL: ev.URL, PageName: ev.PageName,
		Properties: ev.Properties, Traits: ev.Traits, // Mapped: nil unless a rule maps fields; it encodes as {}
		EventTime: ev.EventTime, ReceivedAt: ev.ReceivedAt, ProcessedAt: now,
		RawPartition: partition, RawOffset: offset, Payload: ev.Payload,
	}
	email := ev.Email
	if c.cfg.Mapper != nil {
		ruleID, name, fields := c.cfg.Mapper.Map(ev.Tenant, ev)
		sig.RuleID, sig.MappedName = ruleID, name
		if fields != nil {
			sig.Mapped = fields
			if em := NormalizeEmail(fields["email"]); em != "" {
				email = em
			}
		}
	}
	return sig, email
}

// dedup returns the live dedup entry under dk; an entry older than the window counts as absent.
func (c *Core) dedup(st State, dk []byte, now time.Time) (dedupEntry, bool, error) {
	v, err := st.Get(dk)
	if err != nil || v == nil {
		return dedupEntry{}, false, err
	}
	e, err := decodeDedup(v)
	if err != nil {
		return e, false, err
	}
	return e, now.UnixMilli()-e.FirstSeenMs <= c.cfg.DedupWindow.Milliseconds(), nil
}

// resolve links sig to the lead of the first of ids that has one, and enriches it with the lead's traits.
func (c *Core) resolve(st State, tenant string, ids []visitor, sig *schemas.Signal) error {
	for _, v := range ids {
		id, ok, err := c.getIdentity(st, tenant, v)
		if err != nil {
			return err
		}
		if ok && id.Email != "" {
			sig.Status, sig.Email = schemas.StatusLinked, id.Email
			if sig.Traits == "{}" && id.Traits != "" {
				sig.Traits = id.Traits
			}
			return nil
		}
	}
	return nil
}

func (c *Core) getIdentity(st State, tenant string, v visitor) (identity, bool, error) {
	c.kbuf = appendStateKey(c.kbuf[:0], prefixIdentity, tenant, v.kind, ":", v.id)
	b, err := st.Get(c.kbuf)
	if err != nil || b == nil {
		return identity{}, false, err
	}
	id, err := decodeIdentity(b)
	return id, err == nil, err
}
