package sink

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// appendSignalColumns appends rows to b column by column: one typed slice per column instead of AppendStruct's
// reflection per row, which profiling showed to be half of the insert's client-side CPU, and the sink's inserts
// are what bounds its throughput. The column order is the ch tags of signalRow (the insert's column list).
func appendSignalColumns(b driver.Batch, rows []signalRow) error {
	n := len(rows)
	strs := func(f func(*signalRow) string) []string {
		out := make([]string, n)
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return out
	}
	times := func(f func(*signalRow) time.Time) []time.Time {
		out := make([]time.Time, n)
		for i := range rows {
			out[i] = f(&rows[i])
		}
		return out
	}
	arrays := func(f func(*signalRow) []string) [][]string {
		out := make([][]string, n)
		for i := range rows {
			if out[i] = f(&rows[i]); out[i] == nil {
				out[i] = []string{}
			}
		}
		return out
	}
	version, evMs, rawOff, kOff := make([]uint64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	rawPart, kPart := make([]int32, n), make([]int32, n)
	for i := range rows {
		r := &rows[i]
		version[i], evMs[i], rawOff[i], kOff[i] = r.Version, r.EventTimeMs, r.RawOffset, r.KafkaOffset
		rawPart[i], kPart[i] = r.RawPartition, r.KafkaPartition
	}
	cols := map[string]any{
		"tenant":       strs(func(r *signalRow) string { return r.Tenant }),
		"signal_id":    strs(func(r *signalRow) string { return r.SignalID }),
		"version":      version,
		"status":       strs(func(r *signalRow) string { return r.Status }),
		"source":       strs(func(r *signalRow) string { return r.Source }),
		"type":         strs(func(r *signalRow) string { return r.Type }),
		"event":        strs(func(r *signalRow) string { return r.Event }),
		"message_id":   strs(func(r *signalRow) string { return r.MessageID }),
		"anonymous_id": strs(func(r *signalRow) string { return r.AnonymousID }),
		"user_id":      strs(func(r *signalRow) string { return r.UserID }),
		"email":        strs(func(r *signalRow) string { return r.Email }),
		"url":          strs(func(r *signalRow) string { return r.URL }),
		"page_name":    strs(func(r *signalRow) string { return r.PageName }),
		"properties":   strs(func(r *signalRow) string { return r.Properties }),
		"traits":       strs(func(r *signalRow) string { return r.Traits }),
		"rule_id":      strs(func(r *signalRow) string { return r.RuleID }),
		"mapped_name":  strs(func(r *signalRow) string { return r.MappedName }),
		"mapped_keys":  arrays(func(r *signalRow) []string { return r.MappedKeys }),
		"mapped_values": arrays(func(r *signalRow) []string {
			return r.MappedValues
		}),
		"event_time":      times(func(r *signalRow) time.Time { return r.EventTime }),
		"event_time_ms":   evMs,
		"received_at":     times(func(r *signalRow) time.Time { return r.ReceivedAt }),
		"processed_at":    times(func(r *signalRow) time.Time { return r.ProcessedAt }),
		"raw_partition":   rawPart,
		"raw_offset":      rawOff,
		"payload":         strs(func(r *signalRow) string { return bytesView(r.Payload) }),
		"kafka_topic":     strs(func(r *signalRow) string { return r.KafkaTopic }),
		"kafka_partition": kPart,
		"kafka_offset":    kOff,
	}
	for i, name := range signalColumns {
		v, ok := cols[name]
		if !ok {
			return fmt.Errorf("signals column %s has no columnar append", name)
		}
		if err := b.Column(i).Append(v); err != nil {
			return fmt.Errorf("appending column %s: %w", name, err)
		}
	}
	return nil
}

var signalColumns = columnsOf[signalRow]()

// bytesView returns b as a string without copying. Only for bytes nobody writes to again: a decoded record's
// payload, which the column copies into its own buffer.
func bytesView(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
