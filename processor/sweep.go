package processor

import (
	"errors"
	"fmt"
	"log/slog"
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

// sweep lets the core expire up to budget of the partition's committed dedup, counter and alias-sent keys,
// resuming where the last batch stopped, and pauses interval after each full pass. It runs after the batch's
// records, and what it examines is the batch's view of a key, not the committed one: a key the batch wrote is
// expired from its new value (a dedup entry the batch re-created is live; a counter the batch moved is the one
// that counts), and one the batch deleted is skipped. Keys the batch created are not committed yet, so not
// visited: they are new.
func sweep(c *Core, s *storeState, ov *overlay, now time.Time, budget int, interval time.Duration, log *slog.Logger) error {
	if now.Before(s.sweepAfter) {
		return nil
	}
	lower := s.sweepCursor
	if lower == nil {
		lower = []byte{prefixCounter}
	}
	// 'c' (counters), 'd' (dedup) and 'e' (alias pairs sent) are adjacent: one range covers them.
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixAliasSent + 1}})
	if err != nil {
		return fmt.Errorf("%w: sweeping state: %w", ErrStateIO, err)
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
		// No copies: Expire keeps neither (State copies the keys it keeps), and both stay valid until Next.
		key := it.Key()
		if err := c.Expire(ov, key, val, now); err != nil {
			if errors.Is(err, ErrStateIO) {
				return err
			}
			log.Warn("skipping state key the sweep cannot read", "key", fmt.Sprintf("%q", key), "err", err)
		}
	}
	if it.Valid() {
		s.sweepCursor = append([]byte(nil), it.Key()...) // not in place: it is the open iterator's bound
	} else {
		s.sweepCursor = nil
		s.sweepAfter = now.Add(interval)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("%w: sweeping state: %w", ErrStateIO, err)
	}
	return nil
}
