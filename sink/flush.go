package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// flushDue flushes every table whose batch reached FlushRows, FlushBytes or FlushInterval, then commits.
func (s *Sink) flushDue(ctx context.Context, now time.Time) error {
	flushed := false
	for _, b := range s.tables {
		reason := ""
		switch {
		case b.len() == 0:
		case b.len() >= s.cfg.FlushRows:
			reason = "rows"
		case b.size() >= s.cfg.FlushBytes:
			reason = "bytes"
		case now.Sub(b.oldest()) >= s.cfg.FlushInterval:
			reason = "age"
		}
		if reason == "" {
			continue
		}
		if err := s.flush(ctx, b, reason); err != nil {
			return err
		}
		flushed = true
	}
	for _, b := range s.tables {
		s.m.bufferedRows.WithLabelValues(b.table()).Set(float64(b.len()))
	}
	if flushed || s.hasUncommitted() {
		s.commit(ctx)
	}
	return nil
}

// flush inserts b, retrying with capped exponential backoff until ClickHouse takes it or ctx ends. While it
// retries, fetching is paused: kgo stops buffering records, so memory stays bounded by the batches, and nothing
// is lost because no offset moves past a row that is not in ClickHouse.
func (s *Sink) flush(ctx context.Context, b buffer, reason string) error {
	wait := s.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		ictx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
		err := b.insert(ictx, s.conn)
		cancel()
		if err == nil {
			s.m.flushSeconds.WithLabelValues(b.table()).Observe(time.Since(start).Seconds())
			s.m.rowsInserted.WithLabelValues(b.table()).Add(float64(b.len()))
			s.m.flushes.WithLabelValues(b.table(), reason).Inc()
			b.reset()
			if s.paused {
				s.client.ResumeFetchTopics(s.topicNames()...)
				s.paused = false
				s.m.paused.Set(0)
				s.log.Info("clickhouse is back, fetching resumed", "table", b.table(), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.insertErrors.WithLabelValues(b.table()).Inc()
		if !s.paused {
			s.client.PauseFetchTopics(s.topicNames()...)
			s.paused = true
			s.m.paused.Set(1)
		}
		s.log.Warn("insert failed, retrying", "table", b.table(), "rows", b.len(), "attempt", attempt,
			"backoff", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, s.cfg.RetryMax)
	}
}

func (s *Sink) topicNames() []string {
	names := make([]string, 0, len(s.topics))
	for full := range s.topics {
		names = append(names, full)
	}
	return names
}

// committable returns, per partition, the highest offset that is safe to commit: below the first row still
// batched for any table (a poison record of signals.resolved waits in the dead_letters batch, for instance), else
// just past the last record consumed.
func (s *Sink) committable() map[tp]kgo.EpochOffset {
	out := make(map[tp]kgo.EpochOffset, len(s.next))
	for p, next := range s.next {
		for _, b := range s.tables {
			if first, ok := b.pending()[p]; ok && first < next.Offset {
				next = kgo.EpochOffset{Epoch: -1, Offset: first}
			}
		}
		out[p] = next
	}
	return out
}

func (s *Sink) hasUncommitted() bool {
	for p, o := range s.committable() {
		if c, ok := s.committed[p]; !ok || c != o.Offset {
			return true
		}
	}
	return false
}

// commit commits the committable offsets that moved. A failed commit is logged and retried with the next one:
// the rows are already in ClickHouse, so the worst outcome is a re-delivery that ReplacingMergeTree absorbs.
func (s *Sink) commit(ctx context.Context) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	n := 0
	for p, o := range s.committable() {
		if c, ok := s.committed[p]; ok && c == o.Offset {
			continue
		}
		if offsets[p.topic] == nil {
			offsets[p.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[p.topic][p.partition] = o
		n++
	}
	if n == 0 {
		return
	}
	var failed error
	s.client.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			failed = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					failed = fmt.Errorf("committing %s/%d: %w", t.Topic, p.Partition, err)
					continue
				}
				s.committed[tp{t.Topic, p.Partition}] = offsets[t.Topic][p.Partition].Offset
			}
		}
	})
	if failed != nil {
		s.m.commitErrors.Inc()
		s.log.Warn("offset commit failed; will retry with the next flush", "err", failed)
		return
	}
	s.m.commits.Inc()
}

// shutdown flushes what is batched and commits it, bounded by InsertTimeout. Failing here loses nothing: the
// offsets stay where they were and the records are read again after the restart.
func (s *Sink) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.InsertTimeout)
	defer cancel()
	for _, b := range s.tables {
		if b.len() == 0 {
			continue
		}
		if err := s.flush(ctx, b, "shutdown"); err != nil {
			s.log.Warn("final flush failed; the records will be read again", "table", b.table(), "err", err)
			return nil
		}
	}
	s.commit(ctx)
	return nil
}
