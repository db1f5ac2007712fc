package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFlagsFromEnvironment runs the three binaries configured by the environment (schemas/envflag's rule:
// SIGNALSTAGE_<STAGE>_<FLAG>, else SIGNALSTAGE_<FLAG>) against the real broker: flags that had no variable
// before take effect from one (ingest -max-event-bytes, processor replay -from/-dry-run, sink tail -topic,
// -from-beginning), a flag on the command line wins over its variable, and a value a flag refuses exits 2 naming
// the variable and the flag.
func TestFlagsFromEnvironment(t *testing.T) {
	k := NewKafka(t, 3)
	bin := buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	shared := []string{"SIGNALSTAGE_BROKERS=" + strings.Join(k.Brokers, ","), "SIGNALSTAGE_TOPIC_PREFIX=" + k.Prefix,
		"SIGNALSTAGE_PARTITIONS=3", "SIGNALSTAGE_LOG_LEVEL=warn"}
	env := func(extra ...string) []string { return append(append(os.Environ(), shared...), extra...) }

	// ingest: the listen address in the environment is taken (it would fail to start), -addr wins; the event
	// size limit comes from a variable only.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr, admin := freeAddr(t), freeAddr(t)
	ing := exec.Command(filepath.Join(bin, "ingest"), "-addr", addr)
	ing.Env = env("SIGNALSTAGE_INGEST_ADDR="+busy.Addr().String(), "SIGNALSTAGE_INGEST_ADMIN_ADDR="+admin,
		"SIGNALSTAGE_INGEST_MAX_EVENT_BYTES=300", "SIGNALSTAGE_KEYS_FILE="+filepath.Join(filepath.Dir(file), "dev-keys.json"))
	var ingLog strings.Builder
	ing.Stdout, ing.Stderr = &ingLog, &ingLog
	if err := ing.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ing.Process.Signal(os.Interrupt)
		_ = ing.Wait()
		if t.Failed() {
			t.Logf("--- ingest log:\n%s", ingLog.String())
		}
	})
	waitFor(t, 60*time.Second, "ingest /readyz on the admin address from SIGNALSTAGE_INGEST_ADMIN_ADDR", func() bool {
		return httpStatus("http://"+admin+"/readyz") == 200
	})
	post := func(pad int) (int, string) {
		body := fmt.Sprintf(`{"type":"track","event":"EnvFlags","anonymousId":"a-%d","messageId":"m-%d","properties":{"pad":%q}}`,
			pad, pad, strings.Repeat("x", pad))
		resp, err := http.Post("http://"+addr+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("posting to -addr: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, body := post(10); c != 200 {
		t.Fatalf("small event: %d %s, want 200", c, body)
	}
	// The default limit is 32 KiB: a 1 KB event is refused only by the variable's.
	if c, body := post(1000); c == 200 || !strings.Contains(body, "more than the limit of 300") {
		t.Fatalf("1 KB event with SIGNALSTAGE_INGEST_MAX_EVENT_BYTES=300: %d %s, want it refused", c, body)
	}

	// processor replay: -from and -dry-run only from the environment; -only-partitions on the command line wins
	// over SIGNALSTAGE_PROCESSOR_ONLY_PARTITIONS.
	out, code := runBin(t, bin, "processor", env("SIGNALSTAGE_PROCESSOR_FROM=0", "SIGNALSTAGE_PROCESSOR_DRY_RUN=true",
		"SIGNALSTAGE_PROCESSOR_ONLY_PARTITIONS=0,1"), "replay", "-only-partitions", "2")
	if code != 0 || strings.TrimSpace(out) != "partition 2 -> offset 0" {
		t.Fatalf("processor replay: exit %d, output:\n%s\nwant only partition 2 -> offset 0", code, out)
	}

	// sink tail: the topic and -from-beginning from the environment, -n on the command line over SIGNALSTAGE_SINK_N.
	out, code = runBin(t, bin, "sink", env("SIGNALSTAGE_SINK_TOPIC=signals.raw", "SIGNALSTAGE_SINK_FROM_BEGINNING=true",
		"SIGNALSTAGE_SINK_N=5"), "tail", "-n", "1")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, `"EnvFlags"`) {
		t.Fatalf("sink tail: exit %d, output:\n%s\nwant the one event ingest accepted", code, out)
	}

	for _, tc := range []struct{ stage, variable, flag string }{
		{"ingest", "SIGNALSTAGE_INGEST_MAX_IN_FLIGHT", "-max-in-flight"},
		{"processor", "SIGNALSTAGE_PROCESSOR_MAX_POLL_RECORDS", "-max-poll-records"},
		{"sink", "SIGNALSTAGE_FLUSH_ROWS", "-flush-rows"},
	} {
		out, code := runBin(t, bin, tc.stage, env(tc.variable+"=lots"))
		if code != 2 || !strings.Contains(out, tc.variable+`="lots" is not an integer (flag `+tc.flag+")") {
			t.Errorf("%s with %s=lots: exit %d, output:\n%s", tc.stage, tc.variable, code, out)
		}
	}
}

// runBin runs a built binary to its end (bounded) and returns its combined output and exit code.
func runBin(t *testing.T, bin, name string, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not end: %s", name, args, out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), 0
}
