package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// instance is a processor subprocess of a lifecycle test: its own state dir, transactional id and admin port,
// kept across restarts (a pod of a StatefulSet).
type instance struct {
	t     testing.TB
	bin   string
	name  string
	args  []string
	admin string // host:port of its admin listener
	log   string
	cmd   *exec.Cmd
	exit  chan error // the running process's Wait result
}

// newInstance prepares (does not start) an instance of the processor on k named name: transactional id
// <prefix><name>, a fresh state dir, a free admin port, 300 records per transaction, extra flags last.
func newInstance(t testing.TB, bin string, k *testenv.Kafka, name string, extra ...string) *instance {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	admin := l.Addr().String()
	l.Close()
	i := &instance{t: t, bin: bin, name: name, admin: admin, log: filepath.Join(logDir(t), name+".log")}
	i.args = append([]string{"-brokers", k.Brokers[0], "-topic-prefix", k.Prefix, "-partitions",
		fmt.Sprint(k.Topics.Partitions), "-state-dir", t.TempDir(), "-admin-addr", admin,
		"-transactional-id", k.Prefix + name, "-max-poll-records", "300"}, extra...)
	t.Cleanup(func() {
		if i.cmd != nil {
			_ = i.cmd.Process.Kill()
			<-i.exit
		}
		if t.Failed() {
			b, _ := os.ReadFile(i.log)
			t.Logf("%s log (tail):\n%s", name, b[max(0, len(b)-6000):])
		}
	})
	return i
}

// logDir is where instances write their logs: PROCESSOR_TEST_LOGDIR when set (to read them after a run), else
// the test's temp dir.
func logDir(t testing.TB) string {
	if d := os.Getenv("PROCESSOR_TEST_LOGDIR"); d != "" {
		return d
	}
	return t.TempDir()
}

// start starts the process (again, on the same state dir and ids), appending to its log.
func (i *instance) start() {
	i.t.Helper()
	if i.cmd != nil {
		i.t.Fatalf("%s is already running", i.name)
	}
	f, err := os.OpenFile(i.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		i.t.Fatal(err)
	}
	fmt.Fprintf(f, "--- start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(i.bin, i.args...)
	cmd.Stderr = f
	if err := cmd.Start(); err != nil {
		f.Close()
		i.t.Fatal(err)
	}
	i.cmd, i.exit = cmd, make(chan error, 1)
	go func() { i.exit <- cmd.Wait(); f.Close() }()
}

// kill SIGKILLs the process and waits until it is gone.
func (i *instance) kill() {
	i.t.Helper()
	if err := i.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		i.t.Fatal(err)
	}
	<-i.exit
	i.cmd = nil
}

// term sends SIGTERM and waits for the process to exit; it must exit 0 within a minute.
func (i *instance) term() {
	i.t.Helper()
	if err := i.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		i.t.Fatal(err)
	}
	select {
	case err := <-i.exit:
		i.cmd = nil
		if err != nil {
			i.t.Fatalf("%s exited after SIGTERM: %v", i.name, err)
		}
	case <-time.After(time.Minute):
		i.t.Fatalf("%s did not exit within a minute of SIGTERM", i.name)
	}
}

// exited reports whether the process has exited on its own (and how).
func (i *instance) exited() (bool, error) {
	select {
	case err := <-i.exit:
		i.exit <- err
		return true, err
	default:
		return false, nil
	}
}

// count is how many lines of the instance's log contain s.
func (i *instance) count(s string) int {
	b, _ := os.ReadFile(i.log)
	return strings.Count(string(b), s)
}

// get is the status code and body of GET path on the admin listener (0 when it does not answer).
func (i *instance) get(path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + i.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// pacedProduce writes ins in chunks of chunk records every pause, in the background; the channel closes when
// everything is written.
func pacedProduce(t *testing.T, k *testenv.Kafka, ins []rawIn, chunk int, pause time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(ins); i += chunk {
			produce(t, k, ins[i:min(i+chunk, len(ins))]...)
			time.Sleep(pause)
		}
	}()
	return done
}

// waitSignals waits until signals.resolved holds at least n committed signals.
func waitSignals(t *testing.T, k *testenv.Kafka, n int, what string) {
	t.Helper()
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), n, 2*time.Minute); len(got) < n {
		t.Fatalf("only %d signals %s", len(got), what)
	}
}

// stableGaps are the changelog partitions whose last stable offset is below their high watermark (a transaction
// open on them), with that last stable offset.
func changelogEnds(t *testing.T, k *testenv.Kafka) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := k.Admin.ListEndOffsets(ctx, k.Topic(TopicChangelog))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func stableGaps(t *testing.T, k *testenv.Kafka) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topic := k.Topic(TopicChangelog)
	ends, err := k.Admin.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	stable, err := k.Admin.ListCommittedOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	gaps := map[int32]int64{}
	stable.Each(func(o kadm.ListedOffset) {
		if e, ok := ends.Lookup(topic, o.Partition); ok && o.Err == nil && e.Offset > o.Offset {
			gaps[o.Partition] = o.Offset
		}
	})
	return gaps
}

// killWithOpenTransaction SIGKILLs i while it has a transaction open on the changelog, so that transaction stays
// open until the broker aborts it, and before the transaction held its input offsets: it kills when it sees a
// changelog partition's last stable offset below its high watermark, and checks a second later that one still
// is, at the same offset (another instance's transactions come and go), and that no offsets are pending; if
// not, it starts i again and retries. It returns the stuck partitions.
func killWithOpenTransaction(t *testing.T, k *testenv.Kafka, i *instance) []int32 {
	t.Helper()
	for range 30 {
		deadline := time.Now().Add(30 * time.Second)
		for len(stableGaps(t, k)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("never saw a transaction open on the changelog")
			}
		}
		i.kill()
		before := stableGaps(t, k)
		time.Sleep(time.Second)
		var stuck []int32
		for part, lso := range stableGaps(t, k) {
			if before[part] == lso {
				stuck = append(stuck, part)
			}
		}
		// The transaction must not hold offsets yet: the group's offset fetch waits for pending transactional
		// offsets (KIP-447), which would keep the next owner from consuming (and committing past it) at all.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := k.Admin.FetchOffsets(kadm.RequireStable(ctx), k.Prefix+"processor")
		cancel()
		if len(stuck) > 0 && err == nil {
			sort.Slice(stuck, func(a, b int) bool { return stuck[a] < stuck[b] })
			return stuck
		}
		t.Logf("%s was killed after its transaction ended or with its offsets in it (%v); again", i.name, err)
		i.start()
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("could not kill %s with a transaction open", i.name)
	return nil
}

// waitCaughtUp waits until the processor group has committed signals.raw to its end on every partition, so a
// slow (loaded) machine is told from a stalled processor: on timeout it fails with the lag per partition.
func waitCaughtUp(t *testing.T, k *testenv.Kafka, timeout time.Duration) {
	t.Helper()
	raw := k.Topic(schemas.TopicRaw)
	lag := map[int32]int64{}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err1 := k.Admin.ListEndOffsets(ctx, raw)
		committed, err2 := k.Admin.FetchOffsets(ctx, k.Prefix+"processor")
		cancel()
		if err1 != nil || err2 != nil {
			continue
		}
		clear(lag)
		ends.Each(func(o kadm.ListedOffset) {
			at := int64(0)
			if c, ok := committed.Lookup(raw, o.Partition); ok {
				at = c.At
			}
			if o.Offset > at {
				lag[o.Partition] = o.Offset - at
			}
		})
		if len(lag) == 0 {
			return
		}
	}
	t.Fatalf("the processor did not catch up within %s: signals.raw lag by partition %v", timeout, lag)
}

// TestKillThenRebalanceInsideTransactionTimeout: instance a is SIGKILLed mid-stream, so a transaction it had open
// on its changelog partitions holds their last stable offset back until the broker aborts it (its transaction
// timeout, plus up to the broker's 10 s abort scan). b takes a's partitions after the session timeout and commits
// past that open transaction; then c joins inside the window, a second rebalance that moves those partitions
// again. Whoever restores them must read every committed change, b's included, or redeliveries come out again
// and held signals are lost: signals.resolved holds each (id, version) exactly once, exactly the model's.
func TestKillThenRebalanceInsideTransactionTimeout(t *testing.T) {
	t.Parallel() // most of it is waiting
	// The broker aborts a timed-out transaction at its next scan: every 60 s here instead of 10, so the open
	// transaction outlives both rebalances on every run instead of on most.
	pk := testenv.NewPrivateKafka(t, testenv.WithBrokerConfig("transaction.abort.timed.out.transaction.cleanup.interval.ms", "60000"))
	k := testenv.NewKafkaOn(t, pk.Brokers(), 6)
	bin := buildProcessor(t)
	s := newStream(t, 24_000, 600)
	produce(t, k, s.ins[:3000]...)
	a, b := newInstance(t, bin, k, "a"), newInstance(t, bin, k, "b")
	a.start()
	b.start()
	produced := pacedProduce(t, k, s.ins[3000:], 300, 300*time.Millisecond)
	waitSignals(t, k, 4000, "before the kill")
	stuck := killWithOpenTransaction(t, k, a)
	killed, atKill := time.Now(), changelogEnds(t, k)
	t.Logf("a killed with a transaction open on changelog partitions %v", stuck)
	// b takes a's partitions after the session timeout (10 s). c joins as soon as b has committed past a's open
	// transaction on a stuck partition (what a restore that trusts the last stable offset allows), or 20 s after
	// the kill (a restore that waits for it commits nothing there), while the broker has not aborted it yet.
	for deadline := killed.Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ends, gaps := changelogEnds(t, k), stableGaps(t, k)
		if gaps[stuck[0]] == 0 {
			t.Logf("the broker aborted a's transaction before c joined: this run proves less")
			break
		}
		if ends[stuck[0]] > atKill[stuck[0]]+50 {
			t.Logf("b committed past a's open transaction on partition %d (stable %d, end %d)", stuck[0],
				gaps[stuck[0]], ends[stuck[0]])
			break
		}
	}
	c := newInstance(t, bin, k, "c")
	c.start()
	<-produced
	waitCaughtUp(t, k, 5*time.Minute)
	checkExactlyOnce(t, k, s)
	for _, i := range []*instance{b, c} {
		if done, err := i.exited(); done {
			t.Errorf("%s exited: %v", i.name, err)
		}
		t.Logf("%s: %d restores, %d of them waited for the last stable offset", i.name,
			i.count(`"restored partition state"`), i.count(`"restored partition state"`)-i.count(`"waited_for_stable":"0s"`))
	}
}

// waitReady polls the instance's /readyz until it answers want (200 or 503), failing the test after timeout.
func (i *instance) waitReady(want int, timeout time.Duration) string {
	i.t.Helper()
	var code int
	var body string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if code, body = i.get("/readyz"); code == want {
			return body
		}
		if done, err := i.exited(); done {
			i.t.Fatalf("%s exited: %v", i.name, err)
		}
	}
	i.t.Fatalf("%s /readyz: %d %s after %s, want %d", i.name, code, body, timeout, want)
	return ""
}

// TestBrokerOutageOneInstance: the only processor instance rides out a SIGKILL of the broker and a minute
// without it: it stays up, /readyz says 503 during the outage and 200 once it has rejoined and restored, and
// the output is exactly once, exactly the model's (what it was doing when the broker died is aborted or
// committed, never both, never half).
func TestBrokerOutageOneInstance(t *testing.T) {
	t.Parallel()
	pk := testenv.NewPrivateKafka(t)
	k := testenv.NewKafkaOn(t, pk.Brokers(), 6)
	bin := buildProcessor(t)
	s := newStream(t, 12_000, 300)
	produce(t, k, s.ins[:3000]...)
	p := newInstance(t, bin, k, "p")
	p.start()
	p.waitReady(http.StatusOK, time.Minute)
	produce(t, k, s.ins[3000:9000]...) // a backlog, so the processor is mid-stream when the broker dies
	waitSignals(t, k, 3500, "before the outage")
	// Kill the broker while a transaction is open (what stopped the processor before: "ending transaction:
	// unable to dial").
	for deadline := time.Now().Add(time.Minute); len(stableGaps(t, k)) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("never saw a transaction open on the changelog")
		}
	}
	pk.Kill()

	body := p.waitReady(http.StatusServiceUnavailable, 30*time.Second)
	t.Logf("during the outage /readyz: %s", strings.TrimSpace(body))
	time.Sleep(time.Minute)
	if done, err := p.exited(); done {
		t.Fatalf("the processor exited during the outage: %v", err)
	}
	pk.Start()
	back := time.Now()
	p.waitReady(http.StatusOK, 2*time.Minute)
	t.Logf("ready %s after the broker came back", time.Since(back).Round(time.Millisecond))
	<-pacedProduce(t, k, s.ins[9000:], 500, 100*time.Millisecond)
	waitCaughtUp(t, k, 5*time.Minute)
	checkExactlyOnce(t, k, s)
	if done, err := p.exited(); done {
		t.Fatalf("the processor exited: %v", err)
	}
	t.Logf("session restarts: %d", p.count(`"kafka session failed; rejoining after a backoff"`))
}

// TestRollingRestart: three instances with distinct transactional ids are rolled one by one under load: SIGTERM
// (the batch under way commits or aborts, the group is left unless the member is static), a restart within the
// transaction timeout, on to the next once it is ready again. Each exits 0, the output is exactly once and
// exactly the model's. As static members (-instance-id) nobody's partitions move.
func TestRollingRestart(t *testing.T) {
	bin := buildProcessor(t)
	for _, tc := range []struct {
		name   string
		static bool
	}{{"dynamic", false}, {"static", true}} {
		t.Run(tc.name, func(t *testing.T) {
			k := testenv.NewKafka(t, 6)
			s := newStream(t, 18_000, 450)
			produce(t, k, s.ins[:3000]...)
			var insts []*instance
			for _, name := range []string{"a", "b", "c"} {
				var extra []string
				if tc.static {
					extra = []string{"-instance-id", name}
				}
				i := newInstance(t, bin, k, name, extra...)
				i.start()
				insts = append(insts, i)
			}
			before := map[string]string{}
			for _, i := range insts {
				i.waitReady(http.StatusOK, time.Minute)
			}
			produced := pacedProduce(t, k, s.ins[3000:], 300, 150*time.Millisecond)
			waitSignals(t, k, 3000, "before the roll")
			for _, i := range insts {
				before[i.name] = partitionsOf(t, i)
			}
			for _, i := range insts {
				i.term()
				time.Sleep(500 * time.Millisecond)
				i.start()
				i.waitReady(http.StatusOK, time.Minute)
			}
			<-produced
			checkExactlyOnce(t, k, s)
			for _, i := range insts {
				if done, err := i.exited(); done {
					t.Errorf("%s exited: %v", i.name, err)
				}
				if after := partitionsOf(t, i); tc.static && after != before[i.name] {
					t.Errorf("static member %s had partitions %s before the roll, %s after", i.name, before[i.name], after)
				}
			}
		})
	}
}

// partitionsOf is the partition list an instance's /readyz reports once it is ready.
func partitionsOf(t *testing.T, i *instance) string {
	t.Helper()
	var r struct{ Partitions []int32 }
	if err := json.Unmarshal([]byte(i.waitReady(http.StatusOK, time.Minute)), &r); err != nil {
		t.Fatal(err)
	}
	sort.Slice(r.Partitions, func(a, b int) bool { return r.Partitions[a] < r.Partitions[b] })
	return fmt.Sprint(r.Partitions)
}

// TestBrokerHangsMidTransaction: the broker freezes (SIGSTOP: a hung broker, or a network partition that drops
// packets) while the only instance has a transaction open, for longer than the transaction timeout, then
// resumes. Requests time out instead of failing to dial, so ending the transaction fails: the instance replaces
// its session rather than exiting (what stopped it before), is not ready meanwhile, and the output is exactly
// once.
func TestBrokerHangsMidTransaction(t *testing.T) {
	t.Parallel()
	pk := testenv.NewPrivateKafka(t)
	k := testenv.NewKafkaOn(t, pk.Brokers(), 6)
	b, err := os.ReadFile(filepath.Join(pk.Dir, "kafka.pid"))
	if err != nil {
		t.Fatalf("the private broker's pid: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatalf("kafka.pid %q: %v", b, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	bin := buildProcessor(t)
	s := newStream(t, 12_000, 300)
	produce(t, k, s.ins[:3000]...)
	p := newInstance(t, bin, k, "p")
	p.start()
	p.waitReady(http.StatusOK, time.Minute)
	produce(t, k, s.ins[3000:9000]...)
	waitSignals(t, k, 3500, "before the hang")
	for deadline := time.Now().Add(time.Minute); len(stableGaps(t, k)) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("never saw a transaction open on the changelog")
		}
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	body := p.waitReady(http.StatusServiceUnavailable, 30*time.Second)
	t.Logf("during the hang /readyz: %s", strings.TrimSpace(body))
	time.Sleep(40 * time.Second)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if done, err := p.exited(); done {
		t.Fatalf("the processor exited during the hang: %v", err)
	}
	p.waitReady(http.StatusOK, 2*time.Minute)
	<-pacedProduce(t, k, s.ins[9000:], 500, 100*time.Millisecond)
	waitCaughtUp(t, k, 5*time.Minute)
	checkExactlyOnce(t, k, s)
	if done, err := p.exited(); done {
		t.Fatalf("the processor exited: %v", err)
	}
	t.Logf("session restarts: %d", p.count(`"kafka session failed; rejoining after a backoff"`))
}
