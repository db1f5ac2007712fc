package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
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
	j.b.recycle()
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

// insertBlock inserts b. A block ClickHouse refuses for its data (see refusedByData) is bisected until the rows it
// refuses are isolated: the others are stored, the refused ones go to dead_letters, so one bad row never stalls
// the sink. When more than MaxRefusedRows rows are refused, in this block or in a row since ClickHouse last took
// a block of the table, the cause is not a few bad rows but the table refusing everything (a schema mismatch,
// say): nothing more is dead-lettered and the block is retried until ClickHouse takes it.
func (s *Sink) insertBlock(ctx context.Context, b buffer) error {
	err := s.insertRetrying(ctx, b, false)
	if err == nil || !refusedByData(err) {
		return err
	}
	if b.len() > 1 {
		s.log.Warn("ClickHouse refused a block for its data; isolating the rows it refuses", "table", b.table(),
			"rows", b.len(), "err", err)
	}
	var refused []refusal
	err = s.isolate(ctx, b, err, &refused)
	if errors.Is(err, errTooManyRefused) {
		s.log.Error("ClickHouse refuses more rows than -max-refused-rows, in this block or since it last took one; "+
			"not dead-lettering them: retrying the block until it is taken", "table", b.table(), "rows", b.len(),
			"max_refused_rows", s.cfg.MaxRefusedRows, "first_refusal", refused[0].err)
		return s.insertRetrying(ctx, b, true)
	}
	if err != nil {
		return err
	}
	return s.deadLetterRefused(ctx, b.table(), refused)
}

// refuse counts one more row of table refused for its data and reports whether it may be dead-lettered: at most
// MaxRefusedRows in a row, until ClickHouse takes a block of the table again (took).
func (s *Sink) refuse(table string) bool {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	s.refusedStreak[table]++
	return s.refusedStreak[table] <= s.cfg.MaxRefusedRows
}

// took notes that ClickHouse took a block of table.
func (s *Sink) took(table string) {
	s.pauseMu.Lock()
	defer s.pauseMu.Unlock()
	delete(s.refusedStreak, table)
}

// refusal is a one-row block ClickHouse refused, and why.
type refusal struct {
	b   buffer
	err error
}

var errTooManyRefused = errors.New("too many rows refused")

// isolate handles b, which ClickHouse refused with err for its data: a single row is collected into refused, up to
// MaxRefusedRows (in the block, and in a row: see refuse); a larger block is bisected, each half inserted on its
// own and isolated in turn when refused again.
func (s *Sink) isolate(ctx context.Context, b buffer, err error, refused *[]refusal) error {
	if b.len() == 1 {
		*refused = append(*refused, refusal{b, err})
		if !s.refuse(b.table()) || len(*refused) > s.cfg.MaxRefusedRows {
			return errTooManyRefused
		}
		return nil
	}
	lo, hi := b.halves()
	for _, h := range []buffer{lo, hi} {
		switch err := s.insertRetrying(ctx, h, false); {
		case err == nil:
		case !refusedByData(err):
			return err
		default:
			if err := s.isolate(ctx, h, err, refused); err != nil {
				return err
			}
		}
	}
	return nil
}

// deadLetterRefused writes a dead_letters row for each refused row of table. A refused row of dead_letters itself
// has nowhere further to go and is never dropped: the block is retried until ClickHouse takes it (as in an outage),
// so its offset does not move on and nothing is lost; fix what refuses it and it goes in.
func (s *Sink) deadLetterRefused(ctx context.Context, table string, refused []refusal) error {
	var rows []deadLetterRow
	for _, r := range refused {
		o := r.b.origins()[0]
		if table == s.dead.table() {
			s.m.refusedRows.WithLabelValues(table, "held").Inc()
			s.log.Error("ClickHouse refused a dead_letters row; retrying it until it is taken, its offset held",
				"row", o.describe, "topic", o.topic, "partition", o.partition, "offset", o.offset, "err", r.err)
			if err := s.insertRetrying(ctx, r.b, true); err != nil {
				return err
			}
			continue
		}
		s.m.refusedRows.WithLabelValues(table, "dead_lettered").Inc()
		s.m.deadLetters.WithLabelValues("refused").Inc()
		s.log.Warn("ClickHouse refused a row; it goes to dead_letters", "table", table, "row", o.describe,
			"topic", o.topic, "partition", o.partition, "offset", o.offset, "err", r.err)
		rows = append(rows, refusedDeadLetter(o, fmt.Sprintf("%s: ClickHouse refused the %s row (%s): %v",
			o.topic, table, o.describe, r.err)))
	}
	if len(rows) == 0 {
		return nil
	}
	return s.insertBlock(ctx, s.dead.block(rows))
}

// refusedByData reports whether ClickHouse refused an insert because of the rows' values, so that the same rows
// can never be taken: a value a type, a function or a constraint rejects, or a block over the partition limit.
// Everything else (the server down or overloaded, too many parts, a timeout, a missing table) is worth retrying.
func refusedByData(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case 6, // CANNOT_PARSE_TEXT
		27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
		38,  // CANNOT_PARSE_DATE
		41,  // CANNOT_PARSE_DATETIME
		53,  // TYPE_MISMATCH
		69,  // ARGUMENT_OUT_OF_BOUND
		70,  // CANNOT_CONVERT_TYPE
		72,  // CANNOT_PARSE_NUMBER
		117, // INCORRECT_DATA
		131, // TOO_LARGE_STRING_SIZE
		190, // SIZES_OF_ARRAYS_DOESNT_MATCH
		321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
		395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
		469: // VIOLATED_CONSTRAINT
		return true
	case 252: // TOO_MANY_PARTS: "Too many partitions for single INSERT block" is about the rows; "Too many parts" is load
		return strings.Contains(ex.Message, "partitions for single INSERT block")
	}
	return false
}

// insertRetrying inserts b as one INSERT, retrying with capped exponential backoff until ClickHouse takes it or
// ctx ends; a refusal for the data (refusedByData) is returned at once unless retryRefused. While it retries,
// fetching is paused, so kgo stops buffering records and memory stays bounded by the batches; nothing is lost
// because no offset moves past a row that is not in ClickHouse.
func (s *Sink) insertRetrying(ctx context.Context, b buffer, retryRefused bool) error {
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
		var err error
		if s.cluster != nil {
			err = s.cluster.insert(ictx, b)
		} else {
			err = b.insert(ictx, s.conn)
		}
		cancel()
		if err == nil {
			s.took(b.table())
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
		if !retryRefused && refusedByData(err) {
			return err
		}
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
