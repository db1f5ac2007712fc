package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run this binary's main in a child process (the test binary re-executed with
// SIGNALSTAGE_TEST_MAIN set), so that exit codes and what reaches stderr are observed as a user sees them.
func TestMain(m *testing.M) {
	if os.Getenv("SIGNALSTAGE_TEST_MAIN") == "1" {
		os.Args = append([]string{"processor"}, strings.Fields(os.Getenv("SIGNALSTAGE_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestCommandLineMistakes: an unknown verb or a stray argument, and an environment value that cannot be read,
// exit 2 naming the mistake before anything starts (no broker is running for the processor to reach: without
// these checks the first case started a processor against the default broker).
func TestCommandLineMistakes(t *testing.T) {
	cases := []struct {
		name, args, env, want string
	}{
		{"unknown verb", "nonsense-verb -h", "", `unknown command or stray argument "nonsense-verb"`},
		{"stray argument", "-state-dir x extra", "", `stray argument "extra"`},
		{"bad duration", "", "SIGNALSTAGE_PROCESSOR_SESSION_TIMEOUT=ten", `SIGNALSTAGE_PROCESSOR_SESSION_TIMEOUT="ten" is not a duration`},
		{"bad integer", "", "SIGNALSTAGE_PARTITIONS=six", `SIGNALSTAGE_PARTITIONS="six" is not an integer`},
		{"min ISR above RF", "-replication-factor 2 -min-insync-replicas 3", "", `-min-insync-replicas 3 exceeds -replication-factor 2`},
		{"grow onto itself", "grow -from-prefix p. -topic-prefix p.", "", `the new topic set needs its own prefix`},
		{"grow with a stray argument", "grow extra", "", `usage: processor grow`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Bounded: without the checks the processor would start and wait for the unreachable broker.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^$")
			cmd.Env = append(os.Environ(), "SIGNALSTAGE_TEST_MAIN=1", "SIGNALSTAGE_TEST_ARGS="+c.args,
				"SIGNALSTAGE_KAFKA_BROKERS=127.0.0.1:1", "SIGNALSTAGE_PROCESSOR_STATE_DIR="+t.TempDir())
			if c.env != "" {
				cmd.Env = append(cmd.Env, c.env)
			}
			out, err := cmd.CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output does not say %q:\n%s", c.want, out)
			}
		})
	}
}
