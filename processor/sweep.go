package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble"
)

// sweepPerWrite is how many committed keys the sweep examines for each key the batch wrote, on top of
// Config.SweepKeys. Expiry has to keep pace with writes: with a fixed number of keys per batch, a partition that
// writes more new keys per batch than that never finishes a pass, and its state (and compacted changelog) grows
// without bound. Examining k keys per write finishes a pass over a state of S keys in S/(k·w) batches, while the
// state grows by w per batch, so a pass takes at most window/(k-1) of writes and the state stays within
// k/(k-1) of what the window holds (1.33x for k = 4). A key examined costs a step of a Pebble iterator and a
// decode (well under a microsecond, against 10-30 µs to process an event).
const sweepPerWrite = 4

// sweepBudget is how many committed keys the sweep of ov's partition examines in a batch that wrote what ov
// holds, with base (Config.SweepKeys) the least.
func sweepBudget(base int, ov *overlay) int { return base + sweepPerWrite*len(ov.muts) }

// sweepState is where the expiry sweep of a partition stands. A batch's sweep computes the next one, which the
// runner keeps only once the batch committed: an aborted batch's expiries did not happen, so its sweep must not
// count as done.
//
// Between passes the sweep examines nothing until dueMs: no committed key it expires (dedup entry, alias pair
// sent, held counter) falls due before it. A pass establishes it (the earliest due of the keys it examined and
// kept, and of every key written while it ran); every batch lowers it to the earliest due of what it writes.
// Until a first pass ended (a store just opened or caught up from the changelog others wrote) it is 0: unknown,
// so a pass runs.
type sweepState struct {
	cursor    []byte    // where the pass under way resumes; nil: no pass under way
	after     time.Time // no pass starts before it: Config.SweepInterval after the last one ended
	dueMs     int64     // between passes: nothing the sweep expires is due before it (processor clock, ms); 0 unknown
	passDueMs int64     // during a pass: the earliest due of the keys it kept and of the keys written since it began
}

// forget makes what the state holds unknown to the sweep (its store caught up with changelog records it did not
// see written): the next pass runs after the interval, whatever this pass finds.
func (s *sweepState) forget() { s.dueMs, s.passDueMs = 0, 0 }

// sweep lets the core expire up to budget of the partition's committed dedup, counter and alias-sent keys,
// resuming where the last batch stopped, and pauses interval after each full pass, or longer while nothing can
// be due (sweepState). It runs after the batch's records, and what it examines is the batch's view of a key, not
// the committed one: a key the batch wrote is expired from its new value (a dedup entry the batch re-created is
// live; a counter the batch moved is the one that counts), and one the batch deleted is skipped. Keys the batch
// created are not committed yet, so not visited: they are new. It returns the partition's next sweep state and
// counts the keys it examined in c.Stats.SweepExamined.
func sweep(c *Core, s *storeState, ov *overlay, now time.Time, budget int, interval time.Duration, log *slog.Logger) (sweepState, error) {
	next := s.sweep
	written := c.writesDueMs(ov)
	if next.cursor == nil {
		next.dueMs = min(next.dueMs, written)
		if now.Before(next.after) || now.UnixMilli() < next.dueMs {
			return next, nil
		}
		next.passDueMs = written // the keys this batch created: not committed, so not examined by this pass
	} else {
		next.passDueMs = min(next.passDueMs, written)
	}
	lower := next.cursor
	if lower == nil {
		lower = []byte{prefixCounter}
	}
	// 'c' (counters), 'd' (dedup) and 'e' (alias pairs sent) are adjacent: one range covers them.
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixAliasSent + 1}})
	if err != nil {
		return s.sweep, fmt.Errorf("%w: sweeping state: %w", ErrStateIO, err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok && n < budget; ok = it.Next() {
		n++
		val := it.Value()
		if m, ok := ov.muts[string(it.Key())]; ok {
			if m.del {
				continue
			}
			val = m.val
		}
		// No copies: expire keeps neither (State copies the keys it keeps), and both stay valid until Next.
		key := it.Key()
		due, err := c.expire(ov, key, val, now)
		if err != nil {
			if errors.Is(err, ErrStateIO) {
				return s.sweep, err
			}
			// Never expired, so never due: it does not hold the next pass back.
			log.Warn("skipping state key the sweep cannot read", "key", fmt.Sprintf("%q", key), "err", err)
			continue
		}
		next.passDueMs = min(next.passDueMs, due)
	}
	c.Stats.SweepExamined += int64(n)
	if it.Valid() {
		next.cursor = append([]byte(nil), it.Key()...) // not in place: it is the open iterator's bound
	} else {
		next.cursor = nil
		next.after = now.Add(interval)
		next.dueMs = next.passDueMs
	}
	if err := it.Error(); err != nil {
		return s.sweep, fmt.Errorf("%w: sweeping state: %w", ErrStateIO, err)
	}
	return next, nil
}

// writesDueMs is when the earliest of the keys ov writes that the sweep expires falls due (ms, processor clock;
// math.MaxInt64 when it writes none): dedup entries and alias pairs sent from when they were first seen, and held
// signals from when they were held (a held counter is due when its first held signal is, and a counter's first
// signal only moves forward, to signals held later). A value that cannot be read is due at once.
func (c *Core) writesDueMs(ov *overlay) int64 {
	due := int64(math.MaxInt64)
	window, age := c.cfg.DedupWindow.Milliseconds(), c.cfg.MaxHeldAge.Milliseconds()
	for k, m := range ov.muts {
		if m.del || len(k) == 0 {
			continue
		}
		var d int64
		switch k[0] {
		case prefixDedup, prefixAliasSent:
			d = window
		case prefixHeld:
			d = age
		default:
			continue
		}
		r := newValueReader(m.val) // FirstSeenMs and HeldAtMs lead their values
		at := r.varint()
		if r.err != nil {
			return 0
		}
		due = min(due, at+d+1)
	}
	return due
}
