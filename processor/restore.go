package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas/progress"
)

// restoreWaitLog is how often a restore that is waiting for the changelog's last stable offset says so.
const restoreWaitLog = 10 * time.Second

// maxCheckpointAge is how old a local checkpoint may be for a catch-up from it. The compacted changelog drops
// tombstones after delete.retention.ms (24 h by default); a store offline longer could miss deletes, so it is
// rebuilt from the whole changelog instead.
const maxCheckpointAge = 12 * time.Hour

// restore brings a partition store up to the changelog partition's high watermark as it is now, reading
// read committed from after its checkpoint: a fresh store (empty disk) replays the whole compacted changelog, a
// store that was here before only reads what other instances wrote since.
//
// The target is the high watermark, not the last stable offset: this instance owns the partition now (the group
// assigned it), so every earlier owner is fenced, and everything below the high watermark is either committed,
// aborted, or in a transaction an earlier owner left open, which the broker aborts by its transaction timeout.
// Such an open transaction holds the last stable offset below records committed after it (by the owner that came
// next); reading only to the last stable offset would miss those, and a checkpoint past it is not a reason to
// wipe. So the restore waits, without an idle cut-off, until read-committed fetching has passed the high
// watermark: at most the dead owner's transaction timeout plus the broker's abort scan. Only a checkpoint the
// log cannot continue (past its high watermark, or before its start: topic recreated or truncated) or a stale
// one wipes the store first.
func (p *Processor) restore(ctx context.Context, s *partStore, part int32) error {
	start := time.Now()
	epoch := p.epoch(part)
	ctx, cancel := p.stopOr(ctx)
	defer cancel()
	adm, admCl, err := p.admin()
	if err != nil {
		return err
	}
	defer admCl.Close()
	end, err := listedOffset(ctx, adm.ListEndOffsets, p.clog, part)
	if err != nil {
		return fmt.Errorf("listing changelog end: %w", err)
	}
	first, err := listedOffset(ctx, adm.ListStartOffsets, p.clog, part)
	if err != nil {
		return fmt.Errorf("listing changelog start: %w", err)
	}
	stale := s.checkpoint >= 0 && time.Since(s.savedAt) > maxCheckpointAge
	if s.checkpoint+1 > end || (s.checkpoint >= 0 && s.checkpoint+1 < first) || stale {
		p.log.Warn("state does not continue the changelog; wiping", "partition", part, "checkpoint", s.checkpoint,
			"changelog_start", first, "changelog_end", end, "checkpoint_age", time.Since(s.savedAt).String())
		if err := s.wipe(); err != nil {
			return fmt.Errorf("%w: %w", ErrStateIO, err)
		}
	}
	from := s.checkpoint + 1
	if from >= end {
		p.m.restoreSeconds.Observe(time.Since(start).Seconds())
		return nil
	}
	cl, err := kgo.NewClient(p.cfg.kafkaOpts(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{p.clog: {part: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records show where a transaction ended, so the last offset below the target is always seen:
		// a committed record, or the marker that ends an aborted transaction. (The last record of a log is in
		// its active segment, which compaction never cleans.)
		kgo.KeepControlRecords())...)
	if err != nil {
		return fmt.Errorf("creating restore client: %w", err)
	}
	defer cl.Close()
	var n int64
	last, stable := s.checkpoint, int64(-1)
	// A long restore (a fresh disk reading a big changelog) says how far it is; a short one only logs the
	// summary below.
	meter := progress.Start("restore", end-from, progress.Options{Log: p.log, Every: p.cfg.RestoreProgress,
		Attrs: []any{"partition", part}, Quiet: true})
	defer meter.Discard() // a failed restore: no finished line
	waitingSince := time.Time{}
	for last < end-1 {
		pctx, cancel := context.WithTimeout(ctx, restoreWaitLog)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fs.Err0(); err != nil && pctx.Err() == nil {
			return fmt.Errorf("reading changelog %s/%d: %w", p.clog, part, err)
		}
		if p.epoch(part) != epoch {
			// Taken away while waiting: the rebalance rewinds every partition to its committed offset, so the
			// batch that asked is dropped, and the next owner restores (what was applied stays valid).
			return errRevoked
		}
		fs.EachPartition(func(fp kgo.FetchTopicPartition) { stable = max(stable, fp.LastStableOffset) })
		recs := fs.Records()
		if len(recs) == 0 {
			if waitingSince.IsZero() {
				waitingSince = time.Now()
			}
			if pctx.Err() == nil {
				continue // an aborted batch, filtered out: the position moved on
			}
			p.log.Warn("restore waits for the changelog's last stable offset: a transaction an earlier owner left "+
				"open ends by its transaction timeout", "partition", part, "read_to", last, "last_stable", stable,
				"target", end, "waiting", time.Since(waitingSince).Round(time.Second).String())
			continue
		}
		kvs := make([]kv, 0, len(recs))
		for _, r := range recs {
			if r.Offset >= end {
				last = end - 1 // a marker past the target ends what we read
				break
			}
			last = r.Offset
			if r.Attrs.IsControl() {
				continue
			}
			kvs = append(kvs, kv{key: r.Key, val: r.Value, del: r.Value == nil})
		}
		if err := s.applyRecords(kvs, last); err != nil {
			return fmt.Errorf("%w: %w", ErrStateIO, err)
		}
		n += int64(len(kvs))
		meter.Set(last + 1 - from)
	}
	meter.Stop()
	p.m.restoreRecords.Add(float64(n))
	p.m.restoreSeconds.Observe(time.Since(start).Seconds())
	p.log.Info("restored partition state", "partition", part, "records", n, "from", from, "to", end,
		"took", time.Since(start), "waited_for_stable", waited(waitingSince).String())
	return nil
}

// errRevoked ends a restore whose partition was taken away meanwhile.
var errRevoked = errors.New("partition revoked during its restore")

func waited(since time.Time) time.Duration {
	if since.IsZero() {
		return 0
	}
	return time.Since(since).Round(time.Millisecond)
}

func listedOffset(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error),
	topic string, part int32) (int64, error) {
	lo, err := list(ctx, topic)
	if err != nil {
		return 0, err
	}
	o, ok := lo.Lookup(topic, part)
	if !ok {
		return 0, fmt.Errorf("no offsets for %s/%d", topic, part)
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
}
