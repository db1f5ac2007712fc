package sink

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestConfigValidation(t *testing.T) {
	ok := Config{Brokers: []string{"b:9092"}, ClickHouseAddr: "c:9000", Database: "signalstage"}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		flag string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "-brokers"},
		{"no clickhouse", func(c *Config) { c.ClickHouseAddr = "" }, "-clickhouse-addr"},
		{"database with a dot", func(c *Config) { c.Database = "a.b" }, "-clickhouse-database"},
		{"database injection", func(c *Config) { c.Database = "x; DROP TABLE y" }, "-clickhouse-database"},
		{"negative rows", func(c *Config) { c.FlushRows = -1 }, "-flush-rows"},
		{"negative bytes", func(c *Config) { c.FlushBytes = -5 }, "-flush-bytes"},
		{"tiny interval", func(c *Config) { c.FlushInterval = time.Microsecond }, "-flush-interval"},
		{"retry bounds", func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond }, "-retry-max"},
		{"negative refused rows", func(c *Config) { c.MaxRefusedRows = -1 }, "-max-refused-rows"},
		{"negative partitions per insert", func(c *Config) { c.MaxPartitionsPerInsert = -1 }, "-max-partitions-per-insert"},
		{"cluster", func(c *Config) { c.ClickHouseCluster, c.ClickHouseShards = "c1", [][]string{{"a:9000", "b:9000"}} }, ""},
		{"cluster without shards", func(c *Config) { c.ClickHouseCluster = "c1" }, "-clickhouse-shards"},
		{"shards without cluster", func(c *Config) { c.ClickHouseShards = [][]string{{"a:9000"}} }, "-clickhouse-cluster"},
		{"cluster injection", func(c *Config) { c.ClickHouseCluster, c.ClickHouseShards = "c1 x", [][]string{{"a:9000"}} }, "-clickhouse-cluster"},
		{"quorum above the replicas", func(c *Config) {
			c.ClickHouseCluster, c.ClickHouseShards = "c1", [][]string{{"a:9000", "b:9000"}, {"c:9000"}}
		}, "-insert-quorum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.withDefaults().validate()
			if tc.flag == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.flag+":") {
				t.Fatalf("validate = %v, want ErrConfig naming %s", err, tc.flag)
			}
		})
	}
}

// TestParseShards: ";" between shards, "," between replicas; an empty shard or an address without a port is refused.
func TestParseShards(t *testing.T) {
	got, err := ParseShards("a:9000, b:9000;c:9000,d:9000")
	if err != nil || len(got) != 2 || strings.Join(got[0], ",") != "a:9000,b:9000" || strings.Join(got[1], ",") != "c:9000,d:9000" {
		t.Fatalf("ParseShards = %v, %v", got, err)
	}
	for _, bad := range []string{"a:9000;;b:9000", "a:9000,b", ""} {
		if _, err := ParseShards(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ParseShards(%q) = %v, want ErrConfig", bad, err)
		}
	}
}

// TestCommittable: a partition's committable offset stays at the first row any table still holds from it.
func TestCommittable(t *testing.T) {
	sig := newTable[signalRow]("db", "signals")
	dead := newTable[deadLetterRow]("db", "dead_letters_v2")
	s := &Sink{tables: []buffer{sig, dead}, next: map[tp]kgo.EpochOffset{}}
	a, b := tp{"resolved", 0}, tp{"resolved", 1}
	now := time.Now()
	s.next[a] = kgo.EpochOffset{Epoch: 3, Offset: 10}
	s.next[b] = kgo.EpochOffset{Epoch: 3, Offset: 20}
	dead.add(deadLetterRow{}, a, 4, 1, now) // a poison record at offset 4 waits in dead_letters
	sig.add(signalRow{}, a, 5, 1, now)
	sig.add(signalRow{}, b, 19, 1, now)
	got := s.committable()
	if got[a].Offset != 4 || got[b].Offset != 19 {
		t.Fatalf("committable = %v, want a at 4, b at 19", got)
	}
	dead.reset()
	if got := s.committable(); got[a].Offset != 5 {
		t.Fatalf("after dead_letters flushed: a at %d, want 5", got[a].Offset)
	}
	sig.reset()
	if got := s.committable(); got[a] != s.next[a] || got[b] != s.next[b] {
		t.Fatalf("with nothing pending: %v, want %v", got, s.next)
	}
}
