package processor

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// restoreIdle is how long a restore waits for more changelog records when it has not yet seen the last stable
// offset. Reaching it means the tail below the last stable offset holds only aborted records (filtered by
// read-committed), so there is nothing more to apply.
const restoreIdle = 5 * time.Second

// maxCheckpointAge is how old a local checkpoint may be for a catch-up from it. The compacted changelog drops
// tombstones after delete.retention.ms (24 h by default); a store offline longer could miss deletes, so it is
// rebuilt from the whole changelog instead.
const maxCheckpointAge = 12 * time.Hour

// restore brings a partition store up to the changelog's last stable offset (read committed), starting after its
// checkpoint: a fresh store (empty disk) replays the whole compacted changelog, a store that was here before only
// reads what other instances wrote since. A checkpoint the changelog cannot continue (topic recreated or
// truncated) wipes the store first.
func (p *Processor) restore(ctx context.Context, s *partStore, part int32) error {
	start := time.Now()
	adm, admCl, err := p.admin()
	if err != nil {
		return err
	}
	defer admCl.Close()
	end, err := listedOffset(ctx, adm.ListCommittedOffsets, p.clog, part)
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
			return err
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
		// Control records tell us where the committed data ends even when a transaction marker is last.
		kgo.KeepControlRecords())...)
	if err != nil {
		return fmt.Errorf("creating restore client: %w", err)
	}
	defer cl.Close()
	var n int64
	last := s.checkpoint
	for last < end-1 {
		pctx, cancel := context.WithTimeout(ctx, restoreIdle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fs.Err0(); err != nil && pctx.Err() == nil {
			return fmt.Errorf("reading changelog %s/%d: %w", p.clog, part, err)
		}
		recs := fs.Records()
		if len(recs) == 0 {
			p.log.Warn("changelog tail below the last stable offset is empty; restore done", "partition", part,
				"last", last, "end", end)
			break
		}
		kvs := make([]kv, 0, len(recs))
		for _, r := range recs {
			if r.Offset >= end {
				break
			}
			last = r.Offset
			if r.Attrs.IsControl() {
				continue
			}
			kvs = append(kvs, kv{key: r.Key, val: r.Value, del: r.Value == nil})
		}
		if err := s.applyRecords(kvs, last); err != nil {
			return err
		}
		n += int64(len(kvs))
	}
	p.m.restoreRecords.Add(float64(n))
	p.m.restoreSeconds.Observe(time.Since(start).Seconds())
	p.log.Info("restored partition state", "partition", part, "records", n, "from", from, "to", end,
		"took", time.Since(start))
	return nil
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
