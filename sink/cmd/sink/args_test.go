package main

import "testing"

// TestStrayArguments: an unknown verb and a stray argument exit 2 before anything connects (no broker or ClickHouse
// is at 127.0.0.1:1; without the check `sink run extra` would start loading).
func TestStrayArguments(t *testing.T) {
	t.Setenv("SIGNALSTAGE_KAFKA_BROKERS", "127.0.0.1:1")
	t.Setenv("SIGNALSTAGE_CLICKHOUSE_ADDR", "127.0.0.1:1")
	for _, args := range [][]string{{"nonsense-verb"}, {"run", "extra"}, {"migrate", "-log-level", "error", "extra"}} {
		if code := run(args); code != 2 {
			t.Errorf("sink %v: exit %d, want 2", args, code)
		}
	}
}
