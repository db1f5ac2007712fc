package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// PrivateClickHouse is a ClickHouse server of the test's own, started by services.sh with its own cache directory
// and ports, so a test can stop and restart a real server without disturbing the shared one other tests use.
type PrivateClickHouse struct {
	// Addr is the native-protocol address.
	Addr string
	// HTTP is the HTTP interface's base URL.
	HTTP  string
	cache string
	t     testing.TB
	env   []string
	shell string
}

// NewPrivateClickHouse starts a private server (a few hundred milliseconds once the package is installed) and
// stops it when the test ends.
func NewPrivateClickHouse(t testing.TB) *PrivateClickHouse {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	tcp, http := freePort(t), freePort(t)
	cache := t.TempDir()
	p := &PrivateClickHouse{
		Addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp)),
		HTTP:  "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(http)),
		cache: cache,
		t:     t,
		shell: filepath.Join(filepath.Dir(file), "services.sh"),
		env: append(os.Environ(),
			"SIGNALSTAGE_CACHE="+cache,
			"SIGNALSTAGE_CLICKHOUSE_PORT="+strconv.Itoa(tcp),
			"SIGNALSTAGE_CLICKHOUSE_HTTP_PORT="+strconv.Itoa(http)),
	}
	p.Start()
	t.Cleanup(p.Stop) // registered after TempDir, so it runs before the directory is removed
	return p
}

// Start starts the server (again) and waits until it answers.
func (p *PrivateClickHouse) Start() { p.t.Helper(); p.run("up", "clickhouse") }

// Stop stops the server (SIGTERM, then SIGKILL after the script's timeout); its data stays for the next Start.
func (p *PrivateClickHouse) Stop() { p.t.Helper(); p.run("down", "clickhouse") }

// PID is the server's process id (0 when it is not running), for a benchmark to read its CPU from /proc.
func (p *PrivateClickHouse) PID() int {
	return readPID(filepath.Join(p.cache, "clickhouse", "clickhouse.pid"))
}

func (p *PrivateClickHouse) run(args ...string) {
	p.t.Helper()
	cmd := exec.Command("bash", append([]string{p.shell}, args...)...)
	cmd.Env = p.env
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("services.sh %v: %v\n%s", args, err, out)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
