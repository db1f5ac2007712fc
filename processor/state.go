package processor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/signalstage/signalstage/schemas"
)

// The state of one input partition is a set of keys; every key and value below is also a changelog record (the
// changelog key is the state key, a delete is a tombstone), so restoring is replaying the changelog into Pebble.
//
//	d tenant 0 signalID             dedup entry: first seen, input offset, latest version
//	i tenant 0 kind : id            identity: lead email, linked at, traits
//	c tenant 0 kind : id            cold-storage counter of a visitor: first and next sequence
//	h tenant 0 kind : id 0 seq(8)   one held (cold) signal of a visitor
//	a tenant 0 userId               anonymousIds seen with the userId (on the userId's partition, see alias.go)
//	e tenant 0 anon 0 userId        the (anonymousId, userId) pair was sent to the userId's partition
//
// Values start with a format byte so the encoding can evolve.

// State is the state of one input partition as one batch sees it: reads see the batch's own writes. The core only
// ever mutates state through it, so the runner can buffer the writes, produce them to the changelog inside the
// batch's transaction, and apply them to disk only once that transaction committed.
type State interface {
	// Get returns the value of key, nil when absent. The returned slice must not be modified or kept after the
	// next mutation.
	Get(key []byte) ([]byte, error)
	// Set stores value under key. It keeps value, which the caller must not modify afterwards (every caller
	// passes a freshly encoded value), and copies key.
	Set(key, value []byte)
	// Delete removes key.
	Delete(key []byte)
}

const (
	prefixDedup    = 'd'
	prefixIdentity = 'i'
	prefixCounter  = 'c'
	prefixHeld     = 'h'
	valueFormat    = 1
)

// errBadValue means a state value could not be decoded (a bug or a foreign changelog).
var errBadValue = errors.New("corrupt state value")

func stateKey(prefix byte, tenant string, parts ...string) []byte {
	n := 2 + len(tenant)
	for _, p := range parts {
		n += len(p)
	}
	return appendStateKey(make([]byte, 0, n+16), prefix, tenant, parts...)
}

// appendStateKey is stateKey appending to k, so hot paths can reuse a buffer for keys they only pass to State
// (which copies what it keeps).
func appendStateKey(k []byte, prefix byte, tenant string, parts ...string) []byte {
	k = append(k, prefix)
	k = append(k, tenant...)
	k = append(k, 0)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

func dedupKey(tenant, signalID string) []byte { return stateKey(prefixDedup, tenant, signalID) }

func identityKey(tenant string, v visitor) []byte {
	return stateKey(prefixIdentity, tenant, v.kind, ":", v.id)
}

func counterKey(tenant string, v visitor) []byte {
	return stateKey(prefixCounter, tenant, v.kind, ":", v.id)
}

func heldKey(tenant string, v visitor, seq uint64) []byte {
	return appendSeq(stateKey(prefixHeld, tenant, v.kind, ":", v.id, "\x00"), seq)
}

// appendSeq appends a held sequence number big-endian, so held keys of a visitor sort in hold order.
func appendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// dedupEntry remembers a signal id for the dedup window.
type dedupEntry struct {
	FirstSeenMs int64 // when it was first processed (processor clock)
	Offset      int64 // input offset of the first delivery: the same offset again is a replay, not a duplicate
	Version     int64 // latest version emitted
	First       pinned
}

// identity is what the processor knows about one visitor id. Its link is ordered by (LinkedAtMs, LinkSignal):
// see laterLink.
type identity struct {
	LinkedAtMs int64  // event time of the event that linked it (before issue 13: processing time)
	Email      string // lower-cased lead email; "" when only traits or a group are known
	Traits     string // JSON object
	GroupID    string // the group the visitor last joined (a group call); optional trailing field
	LinkSignal string // signal id of the event that linked it; optional trailing field ("" before issue 13)
}

// heldCounter bounds the cold storage of one visitor: entries first..next-1 may exist.
type heldCounter struct {
	First, Next uint64
}

// heldSignal is one cold signal waiting for its visitor to be linked. It keeps the input, not the signal: about
// half the bytes (the payload is most of a signal), and rehydration builds the signal again, under the mapping
// rules in effect then. The trailing fields are optional (values written before them decode without):
// First pins the first version's key columns; then comes the id it was first emitted with ("" when it is the
// contract's id of the event, the usual case) and, to the end of the value, the event contract's fields
// (schemas.AppendEventFields), so rehydration never parses the payload. Derived is set when decoded; Fields is
// what encode writes.
type heldSignal struct {
	HeldAtMs     int64
	Version      int64
	Key          []byte // record key of the original input
	Source       string
	ReceivedAtMs int64
	Partition    int32
	Offset       int64
	Payload      []byte
	First        pinned
	SignalID     string
	Derived      []byte               // the encoded fields, as decoded (nil in a value written before them)
	Fields       *schemas.EventFields // what encode writes, else Derived as it is
}

func (e dedupEntry) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+e.First.size())
	b = append(b, valueFormat)
	b = binary.AppendVarint(b, e.FirstSeenMs)
	b = binary.AppendVarint(b, e.Offset)
	b = binary.AppendVarint(b, e.Version)
	return e.First.append(b)
}

func (id identity) encode() []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen64+len(id.Email)+len(id.Traits)+len(id.GroupID)+len(id.LinkSignal))
	b = append(b, valueFormat)
	b = binary.AppendVarint(b, id.LinkedAtMs)
	b = appendString(b, id.Email)
	b = appendString(b, id.Traits)
	if id.GroupID != "" || id.LinkSignal != "" {
		b = appendString(b, id.GroupID) // optional: values without it (and older ones) decode as no group
	}
	if id.LinkSignal != "" {
		b = appendString(b, id.LinkSignal) // optional, after the group (which is then written, maybe empty)
	}
	return b
}

func (c heldCounter) encode() []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64)
	b = append(b, valueFormat)
	b = binary.AppendUvarint(b, c.First)
	return binary.AppendUvarint(b, c.Next)
}

func (h heldSignal) encode() []byte {
	n := 1 + 10*binary.MaxVarintLen64 + len(h.Key) + len(h.Source) + len(h.Payload) + h.First.size() + len(h.SignalID) +
		len(h.Derived)
	if h.Fields != nil {
		n += schemas.EventFieldsSize(h.Fields)
	}
	b := make([]byte, 0, n)
	b = append(b, valueFormat)
	b = binary.AppendVarint(b, h.HeldAtMs)
	b = binary.AppendVarint(b, h.Version)
	b = appendBytes(b, h.Key)
	b = appendString(b, h.Source)
	b = binary.AppendVarint(b, h.ReceivedAtMs)
	b = binary.AppendVarint(b, int64(h.Partition))
	b = binary.AppendVarint(b, h.Offset)
	b = appendBytes(b, h.Payload)
	b = h.First.append(b)
	if h.First.set && (h.Fields != nil || h.Derived != nil) { // in order: none without the pinned columns
		b = appendString(b, h.SignalID)
		if h.Fields != nil {
			b = schemas.AppendEventFields(b, h.Fields)
		} else {
			b = append(b, h.Derived...)
		}
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendString is appendBytes without converting v.
func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// valueReader decodes the fields of one value in order; the first error sticks.
type valueReader struct {
	b   []byte
	err error
}

// newValueReader returns a reader by value, so it stays on the caller's stack.
func newValueReader(b []byte) valueReader {
	if len(b) == 0 || b[0] != valueFormat {
		return valueReader{err: fmt.Errorf("%w: format byte", errBadValue)}
	}
	return valueReader{b: b[1:]}
}

func (r *valueReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: varint", errBadValue)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *valueReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: uvarint", errBadValue)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *valueReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = fmt.Errorf("%w: length", errBadValue)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func decodeDedup(b []byte) (dedupEntry, error) {
	r := newValueReader(b)
	e := dedupEntry{FirstSeenMs: r.varint(), Offset: r.varint(), Version: r.varint()}
	e.First = r.pinned()
	return e, r.err
}

func decodeIdentity(b []byte) (identity, error) { return decodeIdentityLink(b, true) }

// decodeIdentityLink decodes an identity, its LinkSignal only when withLink (one allocation fewer on the hot
// path, which only reads the lead; a value decoded without it must not be encoded again).
func decodeIdentityLink(b []byte, withLink bool) (identity, error) {
	r := newValueReader(b)
	id := identity{LinkedAtMs: r.varint(), Email: string(r.bytes()), Traits: string(r.bytes())}
	if r.err == nil && len(r.b) > 0 {
		id.GroupID = string(r.bytes())
	}
	if withLink && r.err == nil && len(r.b) > 0 {
		id.LinkSignal = string(r.bytes())
	}
	return id, r.err
}

func decodeCounter(b []byte) (heldCounter, error) {
	r := newValueReader(b)
	c := heldCounter{First: r.uvarint(), Next: r.uvarint()}
	return c, r.err
}

func decodeHeld(b []byte) (heldSignal, error) {
	r := newValueReader(b)
	h := heldSignal{HeldAtMs: r.varint(), Version: r.varint(), Key: r.bytes(), Source: string(r.bytes()),
		ReceivedAtMs: r.varint(), Partition: int32(r.varint()), Offset: r.varint(), Payload: r.bytes()}
	h.First = r.pinned()
	if r.err == nil && h.First.set && len(r.b) > 0 {
		h.SignalID = string(r.bytes())
		h.Derived, r.b = r.b, nil
	}
	return h, r.err
}
