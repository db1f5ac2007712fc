package sink

import (
	"fmt"
	"reflect"
	"slices"
	"time"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// appendSignalColumns appends rows to b column by column: one typed slice per column instead of AppendStruct's
// reflection per row, which profiling showed to be half of the insert's client-side CPU, and the sink's inserts
// are what bounds its throughput. The column order is the ch tags of signalRow (the insert's column list); a
// column without a slice here is an error, so a field added to signalRow cannot be silently skipped.
func appendSignalColumns(b driver.Batch, rows []signalRow) error {
	c := getSignalCols()
	defer putSignalCols(c)
	for i := range rows {
		c.add(&rows[i])
	}
	cols := c.byName()
	bcols := b.Columns()
	for i, name := range signalColumns {
		v, ok := cols[name]
		if !ok {
			return fmt.Errorf("signals column %s has no columnar append", name)
		}
		if strs, ok := v.([]string); ok && i < len(bcols) {
			reserveStrings(bcols[i], strs)
		}
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("appending column %s: %w", name, err)
		}
	}
	return nil
}

// signalCols holds one typed slice per column of signals. The slices are reused from batch to batch (columnPool):
// allocating them afresh was a few MB of pointer-filled garbage per batch for the collector to scan.
type signalCols struct {
	strs   [signalStrCols][]string
	arrays [2][][]string
	times  [3][]time.Time
	u64    []uint64
	i64    [3][]int64
	i32    [2][]int32
}

// The string columns of signals, in the order add fills strs.
var signalStrNames = [...]string{"tenant", "signal_id", "status", "source", "type", "event", "message_id",
	"anonymous_id", "user_id", "email", "url", "page_name", "properties", "traits", "rule_id", "mapped_name",
	"payload", "kafka_topic", "group_id", "previous_id", "email_domain", "utm_source", "utm_medium", "utm_campaign",
	"utm_term", "utm_content", "referrer", "page_path", "page_title", "page_search", "user_agent", "ip", "locale",
	"timezone", "library_name", "library_version"}

const signalStrCols = len(signalStrNames)

// spareCols keeps the column slices between batches: one set per insert in flight is enough (the flushers), a
// few more only if they all append at once. Not a sync.Pool: the collector empties one every other cycle, and a
// cycle is far shorter than a batch, so the slices were allocated again for most batches.
var spareCols = make(chan *signalCols, 4)

func getSignalCols() *signalCols {
	select {
	case c := <-spareCols:
		return c
	default:
		return &signalCols{}
	}
}

func putSignalCols(c *signalCols) {
	c.reset() // drop the references to the rows' strings before the slices wait
	select {
	case spareCols <- c:
	default:
	}
}

func (c *signalCols) add(r *signalRow) {
	for i, v := range [signalStrCols]string{r.Tenant, r.SignalID, r.Status, r.Source, r.Type, r.Event, r.MessageID,
		r.AnonymousID, r.UserID, r.Email, r.URL, r.PageName, r.Properties, r.Traits, r.RuleID, r.MappedName,
		bytesView(r.Payload), r.KafkaTopic, r.GroupID, r.PreviousID, r.EmailDomain, r.UTMSource, r.UTMMedium,
		r.UTMCampaign, r.UTMTerm, r.UTMContent, r.Referrer, r.PagePath, r.PageTitle, r.PageSearch, r.UserAgent,
		r.IP, r.Locale, r.Timezone, r.LibraryName, r.LibraryVersion} {
		c.strs[i] = append(c.strs[i], v)
	}
	keys, values := r.MappedKeys, r.MappedValues
	if keys == nil {
		keys, values = []string{}, []string{}
	}
	c.arrays[0] = append(c.arrays[0], keys)
	c.arrays[1] = append(c.arrays[1], values)
	c.times[0] = append(c.times[0], r.EventTime)
	c.times[1] = append(c.times[1], r.ReceivedAt)
	c.times[2] = append(c.times[2], r.ProcessedAt)
	c.u64 = append(c.u64, r.Version)
	c.i64[0] = append(c.i64[0], r.EventTimeMs)
	c.i64[1] = append(c.i64[1], r.RawOffset)
	c.i64[2] = append(c.i64[2], r.KafkaOffset)
	c.i32[0] = append(c.i32[0], r.RawPartition)
	c.i32[1] = append(c.i32[1], r.KafkaPartition)
}

func (c *signalCols) byName() map[string]any {
	m := map[string]any{
		"mapped_keys": c.arrays[0], "mapped_values": c.arrays[1],
		"event_time": c.times[0], "received_at": c.times[1], "processed_at": c.times[2],
		"version": c.u64, "event_time_ms": c.i64[0], "raw_offset": c.i64[1], "kafka_offset": c.i64[2],
		"raw_partition": c.i32[0], "kafka_partition": c.i32[1],
	}
	for i, name := range signalStrNames {
		m[name] = c.strs[i]
	}
	return m
}

func (c *signalCols) reset() {
	for i := range c.strs {
		clear(c.strs[i])
		c.strs[i] = c.strs[i][:0]
	}
	for i := range c.arrays {
		clear(c.arrays[i])
		c.arrays[i] = c.arrays[i][:0]
	}
	for i := range c.times {
		c.times[i] = c.times[i][:0]
	}
	c.u64 = c.u64[:0]
	for i := range c.i64 {
		c.i64[i] = c.i64[i][:0]
	}
	for i := range c.i32 {
		c.i32[i] = c.i32[i][:0]
	}
}

var signalColumns = columnsOf[signalRow]()

// strColOffset is where clickhouse-go's String column keeps its proto.ColStr (unexported): found by reflection
// once, checked to be that type, else strColOK is false and reserveStrings does nothing.
var strColOffset, strColOK = func() (uintptr, bool) {
	f, ok := reflect.TypeFor[column.String]().FieldByName("col")
	return f.Offset, ok && f.Type == reflect.TypeFor[proto.ColStr]()
}()

// reserveStrings sizes an empty String column for vals, so appending them copies each string once. Without it
// the column's buffer grows by append, 1.25 times at a time at these sizes: about five copies of every byte and
// most of the insert's allocations (610 MB for a 50,000-row batch of signals whose strings are 60 MB), the
// largest cost of the sink's CPU profile. clickhouse-go has no API to size a column, hence the unsafe access,
// guarded by strColOK (a clickhouse-go that changes the field only loses the sizing; TestReserveStrings fails).
func reserveStrings(c column.Interface, vals []string) {
	s, ok := c.(*column.String)
	if !ok || !strColOK || s.Rows() != 0 {
		return
	}
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	col := (*proto.ColStr)(unsafe.Add(unsafe.Pointer(s), strColOffset))
	col.Buf = slices.Grow(col.Buf, n)
	col.Pos = slices.Grow(col.Pos, len(vals))
}

// bytesView returns b as a string without copying. Only for bytes nobody writes to again: a decoded record's
// payload, which the column copies into its own buffer.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
