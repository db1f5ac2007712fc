package testenv

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The pipeline benchmark's knobs (`make bench-pipeline` passes them; BENCH_ARGS adds more).
var (
	pipeEvents      = flag.Int("pipeline.events", 1_000_000, "BenchmarkPipeline: new events per run")
	pipeRuns        = flag.Int("pipeline.runs", 2, "BenchmarkPipeline: runs on one state directory (state accumulates)")
	pipeBatch       = flag.Int("pipeline.batch", 100, "BenchmarkPipeline: events per request")
	pipeVisitors    = flag.Int("pipeline.visitors", 20_000, "BenchmarkPipeline: distinct anonymousIds")
	pipeIdentify    = flag.Float64("pipeline.identify-pct", 5, "BenchmarkPipeline: percent of events that are identifies")
	pipeResend      = flag.Float64("pipeline.resend-pct", 5, "BenchmarkPipeline: percent of requests posted twice")
	pipeConcurrency = flag.Int("pipeline.concurrency", 8, "BenchmarkPipeline: the load generator's connections")
	pipeBin         = flag.String("pipeline.bin", "", "BenchmarkPipeline: directory of prebuilt ingest, processor, sink, loadgen (default: build them from this tree)")
	pipeProcArgs    = flag.String("pipeline.processor-args", "", "BenchmarkPipeline: extra processor flags, space separated")
	pipeSinkArgs    = flag.String("pipeline.sink-args", "", "BenchmarkPipeline: extra sink flags, space separated")
	pipeCeilings    = flag.Bool("pipeline.ceilings", true, "BenchmarkPipeline: also measure the raw ceilings (franz-go, clickhouse-go) on the same records")
	pipeProfile     = flag.String("pipeline.profile", "", "BenchmarkPipeline: directory to write 30 s CPU profiles of ingest, processor and sink (/debug/pprof), taken 5 s into the last run")
	pipeCeilRows    = flag.Int("pipeline.ceiling-rows", 200_000, "BenchmarkPipeline: rows the clickhouse-go ceiling inserts")
)

// EnvBenchPipeline selects BenchmarkPipeline: it starts a Kafka broker and a ClickHouse server of its own and
// takes minutes, so `make bench` (-bench=.) leaves it out.
const EnvBenchPipeline = "SIGNALSTAGE_BENCH_PIPELINE"

// BenchmarkPipeline is `make bench-pipeline`: the whole pipeline on this machine, the three binaries as
// subprocesses on a private Kafka broker and a private ClickHouse server (so that their CPU is the pipeline's
// alone, and the shared services other tests use are left alone), fed by testenv/cmd/loadgen's segment mix.
// Each run posts -pipeline.events new events; the runs share one state directory and one database, so state
// grows. A run's window opens when the load generator starts and closes when every event is accounted for: the
// processor has committed every record ingest wrote to signals.raw, and the sink has inserted every signal the
// processor emitted (both read from their /metrics, polled every 200 ms once the generator is done). The CPU of
// every process over the window is read from /proc (the generator's from its rusage); the check that the signals
// are ClickHouse rows (uniqExact over signal_id) runs after the window closes. See BENCHMARKS.md.
func BenchmarkPipeline(b *testing.B) {
	if os.Getenv(EnvBenchPipeline) != "1" {
		b.Skipf("set %s=1 (make bench-pipeline)", EnvBenchPipeline)
	}
	for range b.N {
		runPipelineBench(b)
	}
}

type benchPipe struct {
	b                           testing.TB
	dir, bin                    string
	kafka                       *PrivateKafka
	ch                          *PrivateClickHouse
	prefix, database            string
	ingestAddr                  string
	ingestAdm, procAdm, sinkAdm string
	procs                       map[string]*exec.Cmd
}

func runPipelineBench(b *testing.B) {
	p := &benchPipe{b: b, dir: b.TempDir(), procs: map[string]*exec.Cmd{}}
	p.bin = *pipeBin
	if p.bin == "" {
		p.bin = filepath.Join(p.dir, "bin")
		build := exec.Command("go", "build", "-o", p.bin+"/", "./ingest/cmd/ingest", "./processor/cmd/processor",
			"./sink/cmd/sink", "./testenv/cmd/loadgen")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("building the binaries: %v\n%s", err, out)
		}
	}
	// The shared broker's heap (services.sh), so the JVM's CPU is comparable with `make run`'s.
	p.kafka = NewPrivateKafka(b, WithJavaOpts("-Xms256m -Xmx1g"))
	p.ch = NewPrivateClickHouse(b)
	p.prefix, p.database = "bench.", "signalstage"
	p.start()

	out := newBenchOut()
	expectRaw, unique := 0.0, 0
	for run := 1; run <= *pipeRuns; run++ {
		r := p.measureRun(run, &expectRaw)
		unique += *pipeEvents
		rows := p.chScalar(fmt.Sprintf("SELECT uniqExact(signal_id) FROM %s.signals", p.database))
		if rows != strconv.Itoa(unique) {
			b.Errorf("run %d: %s distinct signal ids in ClickHouse, want %d", run, rows, unique)
		}
		out.run(run, r)
		out.topics(p.topicOffsets(), unique)
	}
	if *pipeCeilings {
		out.ceilings(p.measureCeilings())
	}
	out.flush(b)
}

func (p *benchPipe) start() {
	b := p.b
	port := func() string { return "127.0.0.1:" + strconv.Itoa(freePort(b)) }
	p.ingestAddr, p.ingestAdm, p.procAdm, p.sinkAdm = port(), port(), port(), port()
	brokers := p.kafka.Brokers()[0]
	common := []string{"-brokers", brokers, "-topic-prefix", p.prefix, "-log-level", "warn"}
	keys, err := filepath.Abs("dev-keys.json")
	if err != nil {
		b.Fatal(err)
	}
	p.spawn("sink", append(append(common, "-clickhouse-addr", p.ch.Addr, "-clickhouse-database", p.database,
		"-metrics-addr", p.sinkAdm, "-console-addr", "", "-instance-id", "bench-sink"), fields(*pipeSinkArgs)...)...)
	p.spawn("processor", append(append(common, "-state-dir", filepath.Join(p.dir, "state"), "-admin-addr", p.procAdm,
		"-instance-id", "bench-processor"), fields(*pipeProcArgs)...)...)
	p.spawn("ingest", append(common, "-addr", p.ingestAddr, "-admin-addr", p.ingestAdm, "-keys", keys)...)
	deadline := time.Now().Add(3 * time.Minute)
	for _, adm := range []string{p.ingestAdm, p.procAdm, p.sinkAdm} {
		for {
			resp, err := http.Get("http://" + adm + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s/readyz not ready after 3 minutes (logs in %s)", adm, p.dir)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func fields(s string) []string { return strings.Fields(s) }

// spawn starts a stage with only the flags given: SIGNALSTAGE_* variables of the caller's shell (the shared
// services' addresses) are dropped, so nothing of the shared deployment leaks in.
func (p *benchPipe) spawn(name string, args ...string) {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Env = cleanEnv()
	logf, err := os.Create(filepath.Join(p.dir, name+".log"))
	if err != nil {
		p.b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.b.Fatalf("starting %s: %v", name, err)
	}
	p.procs[name] = cmd
	p.b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if p.b.Failed() {
			tail, _ := exec.Command("tail", "-n", "20", logf.Name()).Output()
			p.b.Logf("last lines of %s.log:\n%s", name, tail)
		}
	})
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SIGNALSTAGE_") {
			env = append(env, kv)
		}
	}
	return env
}

// runResult is one run's window: wall time and CPU-seconds per process.
type runResult struct {
	events, raw int
	wall        time.Duration
	cpu         map[string]float64 // process -> CPU-seconds in the window
	rss         map[string]int64   // process -> resident bytes at the window's end
	hwm         map[string]int64   // process -> peak resident bytes so far
}

// measured are the processes whose CPU a run reports, in the order printed.
var measured = []string{"ingest", "processor", "sink", "kafka", "clickhouse", "loadgen"}

func (p *benchPipe) pids() map[string]int {
	return map[string]int{"ingest": p.procs["ingest"].Process.Pid, "processor": p.procs["processor"].Process.Pid,
		"sink": p.procs["sink"].Process.Pid, "kafka": p.kafka.PID(), "clickhouse": p.ch.PID()}
}

func (p *benchPipe) measureRun(run int, expectRaw *float64) runResult {
	b := p.b
	pids := p.pids()
	before := map[string]float64{}
	for name, pid := range pids {
		before[name] = procCPU(b, pid)
	}
	start := time.Now()
	lg := exec.Command(filepath.Join(p.bin, "loadgen"), "-mix", "segment",
		"-url", "http://"+p.ingestAddr+"/api/signal-staging/webhook/dev-key", "-run", fmt.Sprintf("r%d", run),
		"-max-events", strconv.Itoa(*pipeEvents), "-batch", strconv.Itoa(*pipeBatch),
		"-visitors", strconv.Itoa(*pipeVisitors), "-identify-pct", fmt.Sprint(*pipeIdentify),
		"-resend-pct", fmt.Sprint(*pipeResend), "-concurrency", strconv.Itoa(*pipeConcurrency), "-duration", "10m")
	lg.Env = cleanEnv()
	profiled := make(chan struct{})
	if *pipeProfile != "" && run == *pipeRuns {
		go p.profile(profiled)
	} else {
		close(profiled)
	}
	lgOut, err := lg.Output()
	if err != nil {
		b.Fatalf("loadgen: %v\n%s", err, lgOut)
	}
	posted := time.Since(start)
	m := regexp.MustCompile(`result accepted=(\d+) resent=(\d+)`).FindSubmatch(lgOut)
	if m == nil {
		b.Fatalf("loadgen printed no result line:\n%s", lgOut)
	}
	accepted, _ := strconv.Atoi(string(m[1]))
	resent, _ := strconv.Atoi(string(m[2]))
	if accepted != *pipeEvents {
		b.Fatalf("loadgen: %d of %d events accepted:\n%s", accepted, *pipeEvents, lgOut)
	}
	*expectRaw += float64(accepted + resent)

	// Done when the processor has committed every raw record and the sink has inserted every signal emitted.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		pm := scrape(b, p.procAdm)
		sm := scrape(b, p.sinkAdm)
		if pm.sum("signalstage_processor_records_total", `topic="raw"`) >= *expectRaw &&
			sm.sum("signalstage_sink_rows_inserted_total", `table="signals"`) >= pm.sum("signalstage_processor_signals_total", "") {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("run %d: not every event reached ClickHouse 10 minutes after the load (processor raw records %.0f of %.0f, sink rows %.0f of %.0f signals)",
				run, pm.sum("signalstage_processor_records_total", `topic="raw"`), *expectRaw,
				sm.sum("signalstage_sink_rows_inserted_total", `table="signals"`), pm.sum("signalstage_processor_signals_total", ""))
		}
		time.Sleep(200 * time.Millisecond)
	}
	r := runResult{events: *pipeEvents, raw: accepted + resent, wall: time.Since(start),
		cpu: map[string]float64{}, rss: map[string]int64{}, hwm: map[string]int64{}}
	for name, pid := range pids {
		r.cpu[name] = procCPU(b, pid) - before[name]
		r.rss[name], r.hwm[name] = procRSS(pid)
	}
	r.cpu["loadgen"] = (lg.ProcessState.UserTime() + lg.ProcessState.SystemTime()).Seconds()
	<-profiled
	b.Logf("run %d: load posted in %s, all in ClickHouse after %s", run, posted.Round(time.Millisecond), r.wall.Round(time.Millisecond))
	return r
}

// profile writes 30 s CPU profiles of the three stages into -pipeline.profile, then closes done.
func (p *benchPipe) profile(done chan<- struct{}) {
	defer close(done)
	time.Sleep(5 * time.Second)
	if err := os.MkdirAll(*pipeProfile, 0o755); err != nil {
		p.b.Error(err)
		return
	}
	var wg sync.WaitGroup
	for name, adm := range map[string]string{"ingest": p.ingestAdm, "processor": p.procAdm, "sink": p.sinkAdm} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + adm + "/debug/pprof/profile?seconds=30")
			if err != nil {
				p.b.Errorf("profiling %s: %v", name, err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				p.b.Errorf("profiling %s: %s", name, resp.Status)
				return
			}
			if err := os.WriteFile(filepath.Join(*pipeProfile, name+".pprof"), body, 0o644); err != nil {
				p.b.Error(err)
			}
		}()
	}
	wg.Wait()
}

// procCPU is utime+stime of pid (every thread) in seconds, from /proc/<pid>/stat.
func procCPU(b testing.TB, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("reading the CPU of pid %d: %v", pid, err)
	}
	// The command name (field 2) may hold spaces: count fields after its closing parenthesis.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// procRSS returns VmRSS and VmHWM of pid in bytes.
func procRSS(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// metricsText is a /metrics page.
type metricsText []string

func scrape(b testing.TB, addr string) metricsText {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return strings.Split(string(body), "\n")
}

// sum adds the samples of metric whose labels contain label ("" for all).
func (m metricsText) sum(metric, label string) float64 {
	var total float64
	for _, line := range m {
		name, rest, _ := strings.Cut(line, " ")
		base, labels, _ := strings.Cut(name, "{")
		if base != metric || !strings.Contains(labels, label) {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i >= 0 && rest != "" {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				total += v
			}
		}
	}
	return total
}

// topicOffsets sums the end offsets of every topic of the deployment (records, transaction markers included),
// read after a run's window.
func (p *benchPipe) topicOffsets() map[string]int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(p.kafka.Client())
	ends, err := adm.ListEndOffsets(ctx)
	if err != nil {
		p.b.Fatalf("listing end offsets: %v", err)
	}
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if strings.HasPrefix(o.Topic, p.prefix) {
			out[strings.TrimPrefix(o.Topic, p.prefix)] += o.Offset
		}
	})
	return out
}

func (p *benchPipe) chScalar(query string) string {
	resp, err := http.Post(p.ch.HTTP, "text/plain", strings.NewReader(query))
	if err != nil {
		p.b.Fatalf("clickhouse: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		p.b.Fatalf("clickhouse %q: %s", query, body)
	}
	return strings.TrimSpace(string(body))
}
