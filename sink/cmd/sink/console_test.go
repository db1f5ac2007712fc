package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConsoleFlags: a console that cannot start fails the sink at once with exit 2 (a config error naming the
// flag), before the loader runs.
func TestConsoleFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "operators.json")
	if err := os.WriteFile(bad, []byte(`[{"name":"ann","token_sha256":"nothex","tenants":["acme"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no token", nil},
		{"short token", []string{"-console-token", "short"}},
		{"missing token file", []string{"-console-token-file", filepath.Join(t.TempDir(), "none")}},
		{"bad metrics", []string{"-console-token", "0123456789abcdef", "-console-metrics", "sink"}},
		{"bad operators", []string{"-console-token", "0123456789abcdef", "-console-operators-file", bad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SIGNALSTAGE_SINK_CONSOLE_TOKEN", "")
			t.Setenv("SIGNALSTAGE_ADMIN_TOKEN", "")
			args := append([]string{"-console-addr", "127.0.0.1:0", "-metrics-addr", "", "-log-level", "error",
				"-brokers", "127.0.0.1:1", "-clickhouse-addr", "127.0.0.1:1"}, tc.args...)
			if code := run(args); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
}
