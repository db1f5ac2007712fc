package processor

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
)

// The upgrade to the event contract changed how signal ids are computed (contract.LegacySignalID is the old
// way). Dedup entries written before it are keyed by the old ids and live for one dedup window; a retry of such an
// event arriving after the upgrade carries the new id. So, per partition, for one dedup window from the first
// batch this version processes on a state that holds dedup entries, every new signal is also looked up under
// its legacy id (the core's dedupIDs). The end of that window is state (the key below), written through the
// changelog, so a restart, a rebalance or a restore on another instance keeps it instead of starting it again.
// A partition whose state had no dedup entry then (a new deployment) never looks.

// prefixMeta keys the partition's own bookkeeping in its state (not a tenant's).
const prefixMeta = 'm'

var legacyUntilKey = stateKey(prefixMeta, "", "legacy-ids-until")

// legacyLookups reports whether the batch's new signals of partition s must also be looked up under their legacy
// id, deciding the window (and writing it through ov) the first time this version sees the partition.
func (p *Processor) legacyLookups(part int32, s *storeState, ov *overlay, now time.Time) (bool, error) {
	if !s.legacyKnown {
		v, err := ov.Get(legacyUntilKey)
		if err != nil {
			return false, err
		}
		switch {
		case v != nil:
			if len(v) < 2 || v[0] != valueFormat {
				return false, fmt.Errorf("%w: legacy id window", errBadValue)
			}
			until, n := binary.Varint(v[1:])
			if n <= 0 {
				return false, fmt.Errorf("%w: legacy id window", errBadValue)
			}
			s.legacyUntilMs, s.legacyKnown = until, true
		case !s.legacyDecided:
			has, err := hasDedupEntries(s.db)
			if err != nil {
				return false, err
			}
			s.legacyUntilMs, s.legacyDecided = 0, true
			if has {
				s.legacyUntilMs = now.Add(p.cfg.DedupWindow).UnixMilli()
				p.log.Info("state from before the event contract: new signals are also looked up under their legacy ids",
					"partition", part, "until", time.UnixMilli(s.legacyUntilMs).UTC())
			}
			fallthrough
		default:
			// Written until a batch that carried it committed (then it is read back above).
			ov.Set(legacyUntilKey, binary.AppendVarint([]byte{valueFormat}, s.legacyUntilMs))
		}
	}
	return now.UnixMilli() < s.legacyUntilMs, nil
}

// hasDedupEntries reports whether the committed state holds any dedup entry.
func hasDedupEntries(db *pebble.DB) (bool, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixDedup}, UpperBound: []byte{prefixDedup + 1}})
	if err != nil {
		return false, fmt.Errorf("%w: reading state: %w", ErrStateIO, err)
	}
	defer it.Close()
	return it.First(), it.Error()
}
