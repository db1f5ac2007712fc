package sink

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// job is one batch handed to the flusher.
type job struct {
	b      buffer
	reason string
	err    error // set by the flusher: nil once ClickHouse acknowledged the batch
}

// flushFull hands every table whose batch reached FlushRows or FlushBytes to the flusher.
func (s *Sink) flushFull(ctx context.Context) error {
	for _, b := range s.tables {
		reason := ""
		switch {
		case b.len() >= s.cfg.FlushRows:
			reason = "rows"
		case b.size() >= s.cfg.FlushBytes:
			reason = "bytes"
		}
		if reason != "" {
			if err := s.handOver(ctx, &job{b: b.take(), reason: reason}); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushDue hands every table whose batch reached FlushRows, FlushBytes or FlushInterval to the flusher, then
// commits what acknowledged batches made safe.
func (s *Sink) flushDue(ctx context.Context, now time.Time) error {
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
		if err := s.handOver(ctx, &job{b: b.take(), reason: reason}); err != nil {
			return err
		}
	}
	for _, b := range s.tables {
		s.m.bufferedRows.WithLabelValues(b.table()).Set(float64(b.len()))
	}
	lag := make(map[string]int64, len(s.topics))
	for p, stable := range s.stable {
		if next, ok := s.next[p]; ok && stable > next.Offset {
			lag[p.topic] += stable - next.Offset
		}
	}
	for full, base := range s.topics {
		s.m.lag.WithLabelValues(base).Set(float64(lag[full]))
	}
	if s.hasUncommitted() {
		s.commit(ctx)
	}
	return nil
}

// handOver queues j for the flusher, taking acknowledgements meanwhile so the two goroutines never wait on each
// other. It blocks while the flusher is busy with a batch and another waits: that is the backpressure that stops
// polling.
func (s *Sink) handOver(ctx context.Context, j *job) error {
	s.inflight[j] = struct{}{}
	for {
		select {
		case s.jobs <- j:
			return nil
		case r := <-s.results:
			s.complete(r)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// drainResults takes the acknowledgements that arrived without waiting.
func (s *Sink) drainResults() {
	for {
		select {
		case r := <-s.results:
			s.complete(r)
		default:
			return
		}
	}
}

func (s *Sink) complete(j *job) {
	if j.err != nil {
		// Only when the flusher was stopped: the rows are not in ClickHouse, so the batch keeps holding its
		// partitions' offsets back until the process ends and they are read again.
		return
	}
	delete(s.inflight, j)
}

// flusher inserts the batches of jobs in order until jobs is closed or ctx ends.
func (s *Sink) flusher(ctx context.Context) {
	for j := range s.jobs {
		if ctx.Err() != nil {
			j.err = ctx.Err()
		} else {
			j.err = s.insert(ctx, j.b, j.reason)
		}
		s.results <- j
		if wake := s.wake.Load(); wake != nil {
			(*wake)()
		}
	}
}

// insert inserts b: one INSERT, or one per block when b spans more partitions than one INSERT may touch (see
// split). Each block is retried until ClickHouse takes it or ctx ends, and a retry resumes at the block that
// failed, so blocks already acknowledged are not sent again.
func (s *Sink) insert(ctx context.Context, b buffer, reason string) error {
	blocks := b.split(s.cfg.MaxPartitionsPerInsert)
	if len(blocks) > 1 {
		s.log.Info("batch spans more partitions than one insert may touch; inserting it in blocks", "table", b.table(),
			"rows", b.len(), "blocks", len(blocks), "max_partitions_per_insert", s.cfg.MaxPartitionsPerInsert)
	}
	for _, blk := range blocks {
		if err := s.insertBlock(ctx, blk); err != nil {
			return err
		}
	}
	s.m.flushes.WithLabelValues(b.table(), reason).Inc()
	return nil
}

// insertBlock inserts b as one INSERT, retrying with capped exponential backoff until ClickHouse takes it or ctx
// ends. While it retries, fetching is paused, so kgo stops buffering records and memory stays bounded by the
// batches; nothing is lost because no offset moves past a row that is not in ClickHouse.
func (s *Sink) insertBlock(ctx context.Context, b buffer) error {
	wait := s.cfg.RetryMin
	failing := false
	defer func() {
		if failing {
			s.setFailing(false)
		}
	}()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		ictx, cancel := context.WithTimeout(ctx, s.cfg.InsertTimeout)
		err := b.insert(ictx, s.conn)
		cancel()
		if err == nil {
			s.m.flushSeconds.WithLabelValues(b.table()).Observe(time.Since(start).Seconds())
			s.m.rowsInserted.WithLabelValues(b.table()).Add(float64(b.len()))
			s.m.inserts.WithLabelValues(b.table()).Inc()
			if failing {
				s.log.Info("insert succeeded after retries", "table", b.table(), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.m.insertErrors.WithLabelValues(b.table()).Inc()
		if !failing {
			failing = true
			s.setFailing(true)
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

// setFailing counts a flusher into or out of its retry loop and pauses fetching while any flusher is in one.
func (s *Sink) setFailing(on bool) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	if on {
		s.failing++
		if s.failing == 1 {
			s.client.PauseFetchTopics(s.topicNames()...)
			s.m.paused.Set(1)
		}
		return
	}
	s.failing--
	if s.failing == 0 {
		s.client.ResumeFetchTopics(s.topicNames()...)
		s.m.paused.Set(0)
		s.log.Info("inserts succeed again, fetching resumed")
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
// batched or in flight for any table (a poison record of signals.resolved waits in the dead_letters batch, for
// instance), else just past the last record consumed.
func (s *Sink) committable() map[tp]kgo.EpochOffset {
	out := make(map[tp]kgo.EpochOffset, len(s.next))
	hold := func(b buffer) {
		for p, first := range b.pending() {
			if o, ok := out[p]; ok && first < o.Offset {
				out[p] = kgo.EpochOffset{Epoch: -1, Offset: first}
			}
		}
	}
	for p, next := range s.next {
		out[p] = next
	}
	for _, b := range s.tables {
		hold(b)
	}
	for j := range s.inflight {
		hold(j.b)
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

// shutdown hands what is batched to the flusher, waits for it (its context gives it InsertTimeout after Run's
// context ended) and commits what it acknowledged. Failing here loses nothing: the offsets stay where they were
// and the records are read again after the restart.
func (s *Sink) shutdown(flusherDone <-chan struct{}) {
	for _, b := range s.tables {
		if b.len() > 0 {
			j := &job{b: b.take(), reason: "shutdown"}
			s.inflight[j] = struct{}{}
			// Never blocks for long: the flusher takes jobs until its context ends, then fails them fast.
			for sent := false; !sent; {
				select {
				case s.jobs <- j:
					sent = true
				case r := <-s.results:
					s.complete(r)
				}
			}
		}
	}
	close(s.jobs)
	for {
		select {
		case r := <-s.results:
			s.complete(r)
			continue
		case <-flusherDone:
		}
		break
	}
	s.drainResults()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.commit(ctx)
	if len(s.inflight) > 0 {
		s.log.Warn("stopped with batches not in ClickHouse; their records will be read again", "batches", len(s.inflight))
	}
}
