package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestConsoleFlags: a console that cannot start fails the sink at once with exit 2 (a config error naming the
// flag), before the loader runs. The token is a secret: env or file, never a flag's value.
func TestConsoleFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "operators.json")
	if err := os.WriteFile(bad, []byte(`[{"name":"ann","token_sha256":"nothex","tenants":["acme"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(short, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "0123456789abcdef"
	for _, tc := range []struct {
		name, token string
		args        []string
	}{
		{"no token", "", nil},
		{"short token", "", []string{"-console-token-file", short}},
		{"missing token file", "", []string{"-console-token-file", filepath.Join(t.TempDir(), "none")}},
		{"token twice", token, []string{"-console-token-file", short}},
		{"bad metrics", token, []string{"-console-metrics", "sink"}},
		{"bad operators", token, []string{"-console-operators-file", bad}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SIGNALSTAGE_SINK_CONSOLE_TOKEN", tc.token)
			t.Setenv("SIGNALSTAGE_ADMIN_TOKEN", "")
			args := append([]string{"-console-addr", "127.0.0.1:0", "-metrics-addr", "", "-log-level", "error",
				"-brokers", "127.0.0.1:1", "-clickhouse-addr", "127.0.0.1:1"}, tc.args...)
			if code := run(args); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
		})
	}
}
