package processor

import (
	"encoding/binary"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// pinned holds what a signal's first version said about the columns of the sink's partition and sort key. Every
// later version (replay, rehydration) carries the same values, even if the derivation changed in between (a new
// processor release, a fixed timestamp rule), so a new version always replaces its row instead of adding a
// second one under another key. Stored as optional trailing fields: values written before it decode as unset.
type pinned struct {
	set                 bool
	EventTimeMs         int64
	Source, Type, Event string
}

func pinOf(s *schemas.Signal) pinned {
	return pinned{set: true, EventTimeMs: s.EventTime.UnixMilli(), Source: s.Source, Type: s.Type, Event: s.Event}
}

// apply gives s the first version's key columns.
func (p pinned) apply(s *schemas.Signal) {
	if !p.set {
		return
	}
	s.EventTime = time.UnixMilli(p.EventTimeMs).UTC()
	s.Source, s.Type, s.Event = p.Source, p.Type, p.Event
}

func (p pinned) append(b []byte) []byte {
	if !p.set {
		return b
	}
	b = binary.AppendVarint(b, p.EventTimeMs)
	b = appendString(b, p.Source)
	b = appendString(b, p.Type)
	return appendString(b, p.Event)
}

// size bounds the bytes append adds.
func (p pinned) size() int {
	if !p.set {
		return 0
	}
	return 4*binary.MaxVarintLen64 + len(p.Source) + len(p.Type) + len(p.Event)
}

// pinned reads the optional trailing pinned fields.
func (r *valueReader) pinned() pinned {
	if r.err != nil || len(r.b) == 0 {
		return pinned{}
	}
	p := pinned{set: true, EventTimeMs: r.varint(), Source: string(r.bytes()), Type: string(r.bytes()), Event: string(r.bytes())}
	if r.err != nil {
		return pinned{}
	}
	return p
}
