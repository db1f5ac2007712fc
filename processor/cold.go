package processor

import (
	"fmt"
	"math"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// hold puts a cold signal into the visitor's cold storage. The oldest signals fall out (counted) when the visitor
// holds more than MaxHeldPerVisitor.
func (c *Core) hold(st State, v visitor, key []byte, sig *schemas.Signal, ev *Event, now time.Time) error {
	tenant := sig.Tenant
	c.kbuf = appendStateKey(c.kbuf[:0], prefixCounter, tenant, v.kind, ":", v.id)
	ck := c.kbuf
	heldAt := func(seq uint64) []byte { // the visitor's held key of seq, in a buffer the core reuses
		c.hkbuf = appendSeq(appendStateKey(c.hkbuf[:0], prefixHeld, tenant, v.kind, ":", v.id, "\x00"), seq)
		return c.hkbuf
	}
	var cnt heldCounter
	if b, err := st.Get(ck); err != nil {
		return err
	} else if b != nil {
		if cnt, err = decodeCounter(b); err != nil {
			return err
		}
	}
	st.Set(heldAt(cnt.Next), heldSignal{HeldAtMs: now.UnixMilli(), Version: sig.Version, Key: key,
		Source: sig.Source, ReceivedAtMs: sig.ReceivedAt.UnixMilli(), Partition: sig.RawPartition,
		Offset: sig.RawOffset, Payload: sig.Payload, First: pinOf(sig), Fields: &ev.EventFields,
		SignalID: pinnedID(sig.SignalID, ev.SignalID)}.encode())
	cnt.Next++
	for cnt.Next-cnt.First > uint64(c.cfg.MaxHeldPerVisitor) {
		hk := heldAt(cnt.First)
		if b, err := st.Get(hk); err != nil {
			return err
		} else if b != nil {
			st.Delete(hk)
			c.Stats.HeldEvicted++
		}
		cnt.First++
	}
	st.Set(ck, cnt.encode())
	return nil
}

// rehydrate emits every held signal of v again, linked to email with a version above any emitted so far
// (nextVersion of the highest the held record, the live dedup entry and this call know), and clears the hold. Signals held longer than MaxHeldAge are dropped and counted instead.
func (c *Core) rehydrate(st State, em Emitter, tenant string, v visitor, email string, now time.Time) error {
	ck := counterKey(tenant, v)
	b, err := st.Get(ck)
	if err != nil || b == nil {
		return err
	}
	cnt, err := decodeCounter(b)
	if err != nil {
		return err
	}
	var emitted map[string]int64 // versions emitted by this call, per id
	for seq := cnt.First; seq < cnt.Next; seq++ {
		hk := heldKey(tenant, v, seq)
		hb, err := st.Get(hk)
		if err != nil {
			return err
		}
		if hb == nil {
			continue
		}
		h, err := decodeHeld(hb)
		if err != nil {
			c.deadHeld(st, em, tenant, hk, hb, err)
			continue
		}
		if now.UnixMilli()-h.HeldAtMs > c.cfg.MaxHeldAge.Milliseconds() {
			st.Delete(hk)
			c.Stats.HeldExpired++
			continue
		}
		ev, id, err := c.heldEvent(tenant, &h)
		if err != nil {
			c.deadHeld(st, em, tenant, hk, hb, err)
			continue
		}
		st.Delete(hk)
		known := h.Version
		entry, live, err := c.dedup(st, tenant, id, now)
		if err != nil {
			return err
		}
		if live && entry.Version > known {
			known = entry.Version
		}
		if !live {
			// No live entry to count on (it is updated below when live): the id may be held twice (a replay
			// after the window held it again), so remember what this call emitted.
			if v := emitted[id]; v > known {
				known = v
			}
		}
		version := nextVersion(known, now)
		if !live {
			if emitted == nil {
				emitted = map[string]int64{}
			}
			emitted[id] = version
		}
		sig, _ := c.signalOf(&c.rsig, ev, id, h.Partition, h.Offset, version, now)
		sig.Status, sig.Email = schemas.StatusLinked, email
		sig.EmailDomain = contract.EmailDomain(email)
		if sig.GroupID == "" {
			if vid, ok, err := c.leadOf(st, tenant, v); err != nil {
				return err
			} else if ok {
				sig.GroupID = vid.GroupID
			}
		}
		if h.First.set {
			h.First.apply(sig)
		} else if live {
			entry.First.apply(sig)
		}
		enc, err := schemas.EncodeSignalWith(c.reg, sig)
		if err != nil {
			return fmt.Errorf("encoding rehydrated signal: %w", err)
		}
		em.Signal(h.Key, sig, enc)
		c.Stats.Rehydrated++
		if live {
			entry.Version = version
			st.Set(dedupKey(tenant, id), entry.encode())
		}
	}
	st.Delete(ck)
	return nil
}

// HeldDeadLetterer is the optional part of an Emitter that dead-letters a held record rehydration cannot read,
// with the record being processed (the runner's emitter; tests without it only count).
type HeldDeadLetterer interface {
	DeadHeld(tenant string, key, value []byte, reason string)
}

// deadHeld takes a held record that no longer decodes out of the hold: dead-lettered once (the delete commits
// with it), so the visitor's link goes on with its other held signals instead of failing, with every later
// identify of the visitor, for this one record.
func (c *Core) deadHeld(st State, em Emitter, tenant string, hk, hb []byte, err error) {
	if d, ok := em.(HeldDeadLetterer); ok {
		d.DeadHeld(tenant, append([]byte(nil), hk...), append([]byte(nil), hb...), "held signal cannot be rehydrated: "+err.Error())
	}
	st.Delete(hk)
	c.Stats.HeldUnreadable++
}

// heldEvent rebuilds the Event of a held signal and the id it was first emitted with: from the contract's fields
// held with it, or, for a signal held before the contract, derived again from its payload (its id was then the
// legacy one).
func (c *Core) heldEvent(tenant string, h *heldSignal) (*Event, string, error) {
	raw := schemas.RawEvent{Tenant: tenant, Source: h.Source, ReceivedAt: time.UnixMilli(h.ReceivedAtMs).UTC(), Payload: h.Payload}
	if h.Derived != nil {
		if err := schemas.DecodeEventFields(h.Derived, &raw.EventFields); err != nil {
			return nil, "", fmt.Errorf("decoding held signal: %w", err)
		}
	}
	ev, err := c.rreader.read(&raw)
	if err != nil {
		return nil, "", fmt.Errorf("reading held signal: %w", err)
	}
	id := h.SignalID
	switch {
	case id != "":
	case h.Derived != nil:
		id = ev.SignalID // held with its fields: emitted under the contract's id
	default:
		if id = ev.legacyID(); id == "" { // held before the contract: emitted under the legacy id
			id = ev.SignalID
		}
	}
	return ev, id, nil
}

// pinnedID is the id a held signal stores: "" when it is the event's contract id (the id decodes from the held
// fields then), else the id it was emitted under (a legacy one).
func pinnedID(emitted, contractID string) string {
	if emitted == contractID {
		return ""
	}
	return emitted
}

// Expire is what the sweep (sweep.go) calls for each state key it examines, with the key's value as the batch
// sees it (value must be st's current value: a counter is rewritten from it): it removes dedup entries past the
// window and held signals past MaxHeldAge (counted), through st so the changelog sees it. Keys of other kinds
// are ignored.
func (c *Core) Expire(st State, key, value []byte, now time.Time) error {
	_, err := c.expire(st, key, value, now)
	return err
}

// expire is Expire, and returns when what is left of key falls due (ms, processor clock): math.MaxInt64 when
// nothing is (the key was removed, or is of a kind that does not expire).
func (c *Core) expire(st State, key, value []byte, now time.Time) (int64, error) {
	due := int64(math.MaxInt64)
	if len(key) == 0 {
		return due, nil
	}
	switch key[0] {
	case prefixDedup, prefixAliasSent:
		e, err := decodeDedup(value)
		if err != nil {
			return due, err
		}
		window := c.cfg.DedupWindow.Milliseconds()
		if now.UnixMilli()-e.FirstSeenMs > window {
			st.Delete(key)
			if key[0] == prefixDedup {
				c.Stats.DedupExpired++
			}
		} else {
			due = e.FirstSeenMs + window + 1
		}
	case prefixCounter:
		cnt, err := decodeCounter(value)
		if err != nil {
			return due, err
		}
		age := c.cfg.MaxHeldAge.Milliseconds()
		first := cnt.First
		for ; cnt.First < cnt.Next; cnt.First++ {
			c.hkbuf = append(append(append(c.hkbuf[:0], prefixHeld), key[1:]...), 0)
			hk := appendSeq(c.hkbuf, cnt.First)
			c.hkbuf = hk
			hb, err := st.Get(hk)
			if err != nil {
				return math.MaxInt64, err
			}
			if hb != nil {
				r := newValueReader(hb) // only the hold time: the rest need not be decoded
				heldAt := r.varint()
				if r.err != nil {
					return math.MaxInt64, r.err
				}
				if now.UnixMilli()-heldAt <= age {
					due = heldAt + age + 1 // signals held after it expire after it
					break
				}
				st.Delete(hk)
				c.Stats.HeldExpired++
			}
		}
		switch {
		case cnt.First == cnt.Next:
			st.Delete(key)
		case cnt.First != first:
			st.Set(key, cnt.encode())
		}
	}
	return due, nil
}
