package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// EnvCluster selects the cluster suites: `make test-cluster` sets it to 1 after starting both clusters. Tests that
// need a cluster call NewKafkaCluster or NewClickHouseCluster, which skip the test without it (so `go test ./...`
// and `make test` leave them out) and fail it when it is set and the cluster does not answer.
const EnvCluster = "SIGNALSTAGE_CLUSTER"

const howToStartCluster = "start the clusters with `make up-cluster` (or run the suites with `make test-cluster`, " +
	"which starts them); `testenv/services.sh status clusters` shows their state and log files"

// requireClusterSuite skips t unless the cluster suites were selected (SIGNALSTAGE_CLUSTER=1). This is test
// selection, like a -run pattern, not a missing service: with the variable set, a cluster that does not answer
// fails the test.
func requireClusterSuite(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvCluster) != "1" {
		t.Skipf("cluster suite: selected by %s=1 (`make test-cluster` starts the clusters and sets it)", EnvCluster)
	}
}

// repoDir is the repository root (this file lives in testenv/).
func repoDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// cacheDir is services.sh's cache directory: SIGNALSTAGE_CACHE, else <repo>/.cache.
func cacheDir() string {
	if c := os.Getenv("SIGNALSTAGE_CACHE"); c != "" {
		if abs, err := filepath.Abs(c); err == nil {
			return abs
		}
		return c
	}
	return filepath.Join(repoDir(), ".cache")
}

// servicesScript runs testenv/services.sh with the test's environment plus env.
type servicesScript struct {
	env []string
}

// run runs services.sh with args and fails the test, with the script's output, if it fails. It returns the
// output (the script logs to stderr; both are combined).
func (s servicesScript) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.try(args...)
	if err != nil {
		t.Fatalf("services.sh %v: %v\n%s", args, err, out)
	}
	return out
}

func (s servicesScript) try(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoDir(), "testenv", "services.sh")}, args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ownerEnv makes services.sh SIGKILL what it starts once this test binary exits, even if it crashes or is killed
// before its cleanups run.
func ownerEnv() string { return "SIGNALSTAGE_OWNER_PID=" + strconv.Itoa(os.Getpid()) }

// stopwatch runs f and returns how long it took, for the startup times tests log.
func stopwatch(f func()) time.Duration {
	t0 := time.Now()
	f()
	return time.Since(t0).Round(10 * time.Millisecond)
}

// pidAlive reports whether pid runs a process whose command line contains marker.
func pidAlive(pid int, marker string) bool {
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(cmd, []byte(marker))
}
