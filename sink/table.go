package sink

import (
	"context"
	"fmt"
	"reflect"
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
	// take moves the rows into a new buffer for the flusher and leaves this one empty, ready for more rows.
	take() buffer
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
	batch, err := conn.PrepareBatch(ctx, t.query)
	if err != nil {
		return fmt.Errorf("preparing insert into %s: %w", t.name, err)
	}
	defer func() {
		if err != nil {
			_ = batch.Abort()
		}
	}()
	if t.columnar != nil {
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

func (t *table[T]) take() buffer {
	out := &table[T]{name: t.name, query: t.query, rows: t.rows, bytes: t.bytes, since: t.since, firstAt: t.firstAt,
		columnar: t.columnar}
	t.rows = make([]T, 0, cap(t.rows))
	t.bytes = 0
	t.since = time.Time{}
	t.firstAt = map[tp]int64{}
	return out
}

func (t *table[T]) reset() {
	clear(t.rows) // drop references to the rows' strings so they can be collected
	t.rows = t.rows[:0]
	t.bytes = 0
	t.since = time.Time{}
	clear(t.firstAt)
}
