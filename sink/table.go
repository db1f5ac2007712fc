package sink

import (
	"cmp"
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// tp names one topic partition.
type tp struct {
	topic     string
	partition int32
}

// buffer is the batch of one ClickHouse table between two flushes.
type buffer interface {
	table() string
	len() int
	size() int
	// oldest is when the first row of the batch was added (zero when empty).
	oldest() time.Time
	// pending maps each partition with a row in the batch to its lowest offset there: the committed offset of
	// that partition must stay at or below it until the batch is in ClickHouse.
	pending() map[tp]int64
	// insert sends the whole batch as one INSERT with the table's explicit column list.
	insert(ctx context.Context, conn driver.Conn) error
	// split cuts the batch into blocks that each touch at most maxPartitions of the table's partitions, one
	// INSERT each; a batch within the limit is its own only block.
	split(maxPartitions int) []buffer
	// halves cuts a block of two rows or more into two blocks.
	halves() (buffer, buffer)
	// byShard cuts the block into one block per shard (nil where a shard has no row), each inserted into the
	// table named with suffix added, keeping the rows' order; shardOf gives a tenant's shard, 0 to n-1. With
	// fixLoadedAt its first call fixes the block's loaded_at, so every retry's parts are the same bytes
	// (table.loadedAt); without, the server fills it.
	byShard(n int, shardOf func(tenant string) (int, error), suffix string, fixLoadedAt bool) ([]buffer, error)
	// origins says where each row of the block came from, for the dead letter of a row ClickHouse refuses.
	origins() []origin
	// take moves the rows into a new buffer for the flusher and leaves this one empty, ready for more rows.
	take() buffer
	// recycle, called by the loop once ClickHouse took a batch take returned, clears its rows and gives the
	// slice back to the table it was taken from, for a later batch: no batch-sized allocation (and zeroing, and
	// collection) per flush. The batch must not be used afterwards.
	recycle()
	reset()
}

// table is the buffer of rows of type T, whose ch tags name the insert's columns.
type table[T any] struct {
	name    string
	query   string
	rows    []T
	bytes   int
	since   time.Time
	firstAt map[tp]int64
	// columnar, when set, appends the rows column by column instead of with AppendStruct.
	columnar func(driver.Batch, []T) error
	// month, when set, is the partition of a row in a table PARTITION BY toYYYYMM(a DateTime('UTC') column): that
	// column's year*12+month. nil: the table is not partitioned.
	month func(*T) int
	// origin tells where a row came from (see origin).
	origin func(*T) origin
	// tenant is the row's tenant: the sharding key on a cluster.
	tenant func(*T) string
	// loadedAt, when set, is sent as every row's loaded_at instead of the server's DEFAULT now(): a cluster insert
	// sets it once per block, so a retry sends the same bytes and the replicated engine recognises the block (its
	// deduplication hashes the stored data, a server-filled now() included).
	loadedAt time.Time
	// from is the table a batch was taken from (take), which its rows go back to (recycle).
	from *table[T]
	// spare holds emptied row slices of acknowledged batches for the next take (loop-owned, at most maxSpare).
	spare [][]T
}

// maxSpare is how many emptied row slices a table keeps: one per batch being inserted at the default
// -insert-concurrency (2). Each is cleared, so it pins no row's strings, only its own capacity.
const maxSpare = 2

// origin is what the sink keeps of a row ClickHouse refused: where the record came from, its key and value, and
// a description for the reason.
type origin struct {
	tenant, topic          string
	partition              int32
	offset                 int64
	key, payload, describe string
	retries                int32     // times the record was redriven
	at                     time.Time // the record's timestamp: the dead letter's failed_at
}

// monthOf is the partition number month returns for t (UTC).
func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*12 + int(t.Month()) - 1
}

func newTable[T any](database, name string) *table[T] {
	return &table[T]{
		name:    name,
		query:   fmt.Sprintf("INSERT INTO %s.%s (%s)", database, name, strings.Join(columnsOf[T](), ", ")),
		firstAt: map[tp]int64{},
	}
}

// columnsOf returns the ch tags of T's fields in order: the explicit column list of the insert, so a column added
// by a later migration (with a DEFAULT) never breaks an older sink.
func columnsOf[T any]() []string {
	t := reflect.TypeFor[T]()
	cols := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if c := t.Field(i).Tag.Get("ch"); c != "" {
			cols = append(cols, c)
		}
	}
	return cols
}

func (t *table[T]) add(row T, p tp, offset int64, size int, now time.Time) {
	if len(t.rows) == 0 {
		t.since = now
	}
	t.rows = append(t.rows, row)
	t.bytes += size
	if first, ok := t.firstAt[p]; !ok || offset < first {
		t.firstAt[p] = offset
	}
}

func (t *table[T]) table() string         { return t.name }
func (t *table[T]) len() int              { return len(t.rows) }
func (t *table[T]) size() int             { return t.bytes }
func (t *table[T]) oldest() time.Time     { return t.since }
func (t *table[T]) pending() map[tp]int64 { return t.firstAt }

func (t *table[T]) insert(ctx context.Context, conn driver.Conn) (err error) {
	query := t.query
	if !t.loadedAt.IsZero() {
		query = strings.TrimSuffix(query, ")") + ", loaded_at)"
	}
	batch, err := conn.PrepareBatch(ctx, query)
	if err != nil {
		return fmt.Errorf("preparing insert into %s: %w", t.name, err)
	}
	defer func() {
		if err != nil {
			_ = batch.Abort()
		}
	}()
	if !t.loadedAt.IsZero() {
		if err := t.appendLoadedAt(batch); err != nil {
			return fmt.Errorf("appending rows to %s: %w", t.name, err)
		}
	} else if t.columnar != nil {
		if err := t.columnar(batch, t.rows); err != nil {
			return fmt.Errorf("appending rows to %s: %w", t.name, err)
		}
	} else {
		for i := range t.rows {
			if err := batch.AppendStruct(&t.rows[i]); err != nil {
				return fmt.Errorf("appending row to %s: %w", t.name, err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d rows into %s: %w", len(t.rows), t.name, err)
	}
	return nil
}

// appendLoadedAt appends the rows and, as the last column, loadedAt.
func (t *table[T]) appendLoadedAt(batch driver.Batch) error {
	if t.columnar != nil {
		if err := t.columnar(batch, t.rows); err != nil {
			return err
		}
		at := make([]time.Time, len(t.rows))
		for i := range at {
			at[i] = t.loadedAt
		}
		return batch.Column(len(columnsOf[T]())).Append(at)
	}
	typ := reflect.TypeFor[T]()
	var fields []int
	for i := range typ.NumField() {
		if typ.Field(i).Tag.Get("ch") != "" {
			fields = append(fields, i)
		}
	}
	vals := make([]any, len(fields)+1)
	for r := range t.rows {
		v := reflect.ValueOf(&t.rows[r]).Elem()
		for j, f := range fields {
			vals[j] = v.Field(f).Interface()
		}
		vals[len(fields)] = t.loadedAt
		if err := batch.Append(vals...); err != nil {
			return err
		}
	}
	return nil
}

// split: current ClickHouse refuses an INSERT block that touches more than max_partitions_per_insert_block
// partitions (100 by default; ClickHouse 18.16 has no such limit), and retrying it would stall the sink for good.
// A batch of a backfill can span years of event_time months, so it is sorted by month and cut into blocks of at
// most maxPartitions months each. The usual batch, within the limit, is returned as is: no copy, no reordering.
func (t *table[T]) split(maxPartitions int) []buffer {
	if t.month == nil || len(t.rows) == 0 {
		return []buffer{t}
	}
	months := map[int]struct{}{}
	last := t.month(&t.rows[0])
	months[last] = struct{}{}
	for i := range t.rows {
		if m := t.month(&t.rows[i]); m != last { // rows mostly come in runs of one month: skip the map for those
			months[m] = struct{}{}
			last = m
		}
	}
	if len(months) <= maxPartitions {
		return []buffer{t}
	}
	// The job owns the rows: reordering them is safe (every table is a ReplacingMergeTree whose winner does not
	// depend on insert order within a batch).
	slices.SortStableFunc(t.rows, func(a, b T) int { return cmp.Compare(t.month(&a), t.month(&b)) })
	var blocks []buffer
	start, n := 0, 1
	for i := 1; i <= len(t.rows); i++ {
		if i < len(t.rows) && t.month(&t.rows[i]) == t.month(&t.rows[i-1]) {
			continue
		}
		if i == len(t.rows) || n == maxPartitions {
			blocks = append(blocks, t.block(t.rows[start:i:i]))
			start, n = i, 1
			continue
		}
		n++
	}
	return blocks
}

// block is a buffer of rows (a part of t's) that is only ever inserted: no size, age or offsets.
func (t *table[T]) block(rows []T) *table[T] {
	return &table[T]{name: t.name, query: t.query, rows: rows, columnar: t.columnar, month: t.month, origin: t.origin,
		tenant: t.tenant}
}

func (t *table[T]) byShard(n int, shardOf func(string) (int, error), suffix string, fixLoadedAt bool) ([]buffer, error) {
	if fixLoadedAt && t.loadedAt.IsZero() { // the first attempt: every retry of this block sends the same time
		t.loadedAt = time.Now().UTC().Truncate(time.Second)
	}
	parts := make([][]T, n)
	for i := range t.rows {
		s, err := shardOf(t.tenant(&t.rows[i]))
		if err != nil {
			return nil, err
		}
		parts[s] = append(parts[s], t.rows[i])
	}
	out := make([]buffer, n)
	for s, rows := range parts {
		if len(rows) == 0 {
			continue
		}
		b := t.block(rows)
		b.loadedAt = t.loadedAt
		b.name = t.name + suffix
		b.query = strings.Replace(t.query, "."+t.name+" (", "."+b.name+" (", 1)
		out[s] = b
	}
	return out, nil
}

func (t *table[T]) halves() (buffer, buffer) {
	h := len(t.rows) / 2
	return t.block(t.rows[:h:h]), t.block(t.rows[h:])
}

func (t *table[T]) origins() []origin {
	out := make([]origin, len(t.rows))
	for i := range t.rows {
		out[i] = t.origin(&t.rows[i])
	}
	return out
}

func (t *table[T]) take() buffer {
	out := t.block(t.rows)
	out.bytes, out.since, out.firstAt, out.from = t.bytes, t.since, t.firstAt, t
	if n := len(t.spare); n > 0 && cap(t.spare[n-1]) >= cap(t.rows) {
		t.rows, t.spare = t.spare[n-1], t.spare[:n-1]
	} else {
		t.rows = make([]T, 0, cap(t.rows))
	}
	t.bytes = 0
	t.since = time.Time{}
	t.firstAt = map[tp]int64{}
	return out
}

func (t *table[T]) recycle() {
	if t.from != nil && len(t.from.spare) < maxSpare {
		clear(t.rows) // drop the references to the rows' strings so they can be collected
		t.from.spare = append(t.from.spare, t.rows[:0])
	}
	t.rows, t.from = nil, nil
}

func (t *table[T]) reset() {
	clear(t.rows) // drop references to the rows' strings so they can be collected
	t.rows = t.rows[:0]
	t.bytes = 0
	t.since = time.Time{}
	clear(t.firstAt)
}
