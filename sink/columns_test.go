package sink

import (
	"testing"
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// TestReserveStrings: reserveStrings finds clickhouse-go's String column buffer (a clickhouse-go that moves it
// fails here, not silently in the profile), sizes it exactly, and the values appended after it are the rows'.
func TestReserveStrings(t *testing.T) {
	if !strColOK {
		t.Fatal("column.String has no proto.ColStr field col: reserveStrings cannot size String columns")
	}
	c, err := column.Type("String").Column("payload", nil)
	if err != nil {
		t.Fatal(err)
	}
	vals := []string{"a", "", "{\"k\":1}", "ünïcode", "last"}
	reserveStrings(c, vals)
	col := (*proto.ColStr)(unsafe.Add(unsafe.Pointer(c.(*column.String)), strColOffset))
	bufCap, posCap := cap(col.Buf), cap(col.Pos)
	if want := len("a{\"k\":1}ünïcodelast"); bufCap < want || posCap < len(vals) {
		t.Fatalf("reserved %d bytes and %d rows, want at least %d and %d", bufCap, posCap, want, len(vals))
	}
	if _, err := c.Append(vals); err != nil {
		t.Fatal(err)
	}
	if cap(col.Buf) != bufCap || cap(col.Pos) != posCap {
		t.Fatalf("the column grew after reserveStrings: %d/%d -> %d/%d", bufCap, posCap, cap(col.Buf), cap(col.Pos))
	}
	if c.Rows() != len(vals) {
		t.Fatalf("rows = %d, want %d", c.Rows(), len(vals))
	}
	for i, v := range vals {
		if got := c.Row(i, false).(string); got != v {
			t.Fatalf("row %d = %q, want %q", i, got, v)
		}
	}
	// A column already holding rows is left alone (its buffer is not ours to replace).
	reserveStrings(c, []string{"more"})
	if cap(col.Buf) != bufCap {
		t.Fatal("reserveStrings resized a column that already had rows")
	}
}
