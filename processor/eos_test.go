package processor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// stream is a deterministic input with duplicates and identifies, and the outputs the pure core gives for it.
type stream struct {
	ins  []rawIn
	want map[string]bool // "id/version"
}

// newStream builds n events over visitors anonymous visitors: pages, every 7th a redelivery of an earlier event
// of the same visitor with another sentAt, and an identify with email for every 3rd visitor after its 20th event,
// so held signals are rehydrated mid-stream. Each visitor's events share a key, so their order is the model's.
func newStream(t *testing.T, n, visitors int) stream {
	t.Helper()
	s := stream{want: map[string]bool{}}
	seq := make([]int, visitors)
	for i := range n {
		v := i % visitors
		seq[v]++
		var p string
		switch {
		case seq[v] == 21 && v%3 == 0:
			p = fmt.Sprintf(`{"type":"identify","anonymousId":"v%d","messageId":"id%d","traits":{"email":"v%d@x.io"}}`, v, v, v)
		case seq[v]%7 == 0:
			p = fmt.Sprintf(`{"type":"page","anonymousId":"v%d","messageId":"m%d-%d","properties":{"name":"P"},"sentAt":"%d"}`, v, v, seq[v]-3, i)
		default:
			p = fmt.Sprintf(`{"type":"page","anonymousId":"v%d","messageId":"m%d-%d","properties":{"name":"P"},"sentAt":"0"}`, v, v, seq[v])
		}
		s.ins = append(s.ins, rawIn{"t", p})
	}
	c := NewCore(CoreConfig{})
	st, em := memState{}, &recorder{}
	for i, in := range s.ins {
		if err := c.ProcessEvent(st, em, 0, int64(i), nil, edgeRaw(t, in.tenant, in.payload, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	for _, sig := range em.signals {
		s.want[fmt.Sprintf("%s/%d", sig.SignalID, versionCount(sig.Version))] = true
	}
	return s
}

// checkExactlyOnce reads signals.resolved read committed and compares it with the model: each (id, version)
// exactly once, and exactly the model's set.
func checkExactlyOnce(t *testing.T, k *testenv.Kafka, s stream) {
	t.Helper()
	got := settle(t, k, len(s.want), 5*time.Second)
	seen := map[string]int{}
	for _, sig := range got {
		seen[fmt.Sprintf("%s/%d", sig.SignalID, versionCount(sig.Version))]++
	}
	var dup, missing, extra []string
	for k, n := range seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s x%d", k, n))
		}
		if !s.want[k] {
			extra = append(extra, k)
		}
	}
	for k := range s.want {
		if seen[k] == 0 {
			missing = append(missing, k)
		}
	}
	sort.Strings(dup)
	if len(dup)+len(missing)+len(extra) > 0 {
		t.Fatalf("read %d signals for %d expected: %d duplicated %v, %d missing %v, %d unexpected %v", len(got),
			len(s.want), len(dup), head(dup), len(missing), head(missing), len(extra), head(extra))
	}
	t.Logf("%d signals, each (id, version) exactly once", len(got))
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// buildProcessor compiles the processor binary into the test's temp dir.
func buildProcessor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "processor")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/signalstage/signalstage/processor/cmd/processor").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary starts the processor binary on k's topics with stateDir; extra flags come last, so they override
// the defaults given here (-transactional-id, ...).
func startBinary(t *testing.T, bin string, k *testenv.Kafka, stateDir, name string, extra ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-brokers", k.Brokers[0], "-topic-prefix", k.Prefix, "-partitions",
		fmt.Sprint(k.Topics.Partitions), "-state-dir", stateDir, "-admin-addr", "127.0.0.1:0",
		"-transactional-id", k.Prefix+"kill", "-max-poll-records", "300")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, b[max(0, len(b)-4000):])
		}
	})
	return cmd
}

// TestKillMidStream: a processor subprocess is SIGKILLed twice while the input streams in, restarted once on its
// disk and once on an empty one; signals.resolved, read committed, holds each (id, version) exactly once and
// exactly what the model gives, which also needs the held (cold) state to survive both restarts.
func TestKillMidStream(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	bin := buildProcessor(t)
	s := newStream(t, 12_000, 300)
	dir := t.TempDir()

	produce(t, k, s.ins[:4000]...)
	cmd := startBinary(t, bin, k, dir, "run1")
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 4000; i < len(s.ins); i += 1000 {
			produce(t, k, s.ins[i:i+1000]...)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 2000, 60*time.Second); len(got) < 2000 {
		t.Fatalf("only %d signals before the first kill", len(got))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()

	cmd = startBinary(t, bin, k, dir, "run2") // same disk: catches up from its checkpoint
	if got := k.ReadAll(k.Topic(schemas.TopicResolved), 6000, 60*time.Second); len(got) < 6000 {
		t.Fatalf("only %d signals before the second kill", len(got))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = cmd.Process.Wait()

	startBinary(t, bin, k, t.TempDir(), "run3") // empty disk: restores from the changelog
	<-produced
	checkExactlyOnce(t, k, s)
}

// TestReplayCommand: the `processor replay` verb of the binary rewinds a stopped group and prints what it set.
func TestReplayCommand(t *testing.T) {
	k := testenv.NewKafka(t, 2)
	bin := buildProcessor(t)
	produce(t, k, rawIn{"t", `{"type":"track","anonymousId":"a","event":"E","messageId":"m1"}`},
		rawIn{"t", `{"type":"track","anonymousId":"b","event":"E","messageId":"m2"}`})
	r := startProcessor(t, k, t.TempDir(), "p", nil)
	settle(t, k, 2, time.Second)
	r.stop(t)
	var out []byte
	var err error
	for range 20 { // the group may list the stopped member for a moment
		out, err = exec.Command(bin, "replay", "-brokers", k.Brokers[0], "-topic-prefix", k.Prefix,
			"-partitions", "2", "-from", "2000-01-01T00:00:00Z").CombinedOutput()
		if err == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "-> offset 0"); n != 2 {
		t.Fatalf("replay output %q: want both partitions rewound to 0", out)
	}
	if out, err := exec.Command(bin, "replay", "-topic-prefix", k.Prefix).CombinedOutput(); err == nil {
		t.Errorf("replay without -from succeeded: %s", out)
	}
}

// TestKillWithCrossPartitionLinks: userId-only events on the userId's partition, anonymous events on the
// anonymousId's, identifies linking both across partitions through the identities topic, redeliveries, and two
// SIGKILLs of the processor subprocess. The outcome depends on timing, so it is checked by invariants: each
// (id, version) exactly once, versions of an id contiguous from 1, exactly the distinct events as ids, and every
// event of every identified visitor finally linked to its lead.
func TestKillWithCrossPartitionLinks(t *testing.T) {
	k := testenv.NewKafka(t, 6)
	bin := buildProcessor(t)
	ins, want := crossStream(t)
	dir := t.TempDir()
	produce(t, k, ins[:2000]...)
	cmd := startBinary(t, bin, k, dir, "run1")
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 2000; i < len(ins); i += 1000 {
			produce(t, k, ins[i:min(i+1000, len(ins))]...)
			time.Sleep(150 * time.Millisecond)
		}
	}()
	for n, limit := range []int{1500, 3500} {
		if got := k.ReadAll(k.Topic(schemas.TopicResolved), limit, 60*time.Second); len(got) < limit {
			t.Fatalf("only %d signals before kill %d", len(got), n+1)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, _ = cmd.Process.Wait()
		if n == 0 {
			cmd = startBinary(t, bin, k, dir, "run2")
		} else {
			startBinary(t, bin, k, t.TempDir(), "run3")
		}
	}
	<-produced

	checkFinal(t, k, want)
}

// crossStream is 200 visitors x 30 rounds: anonymous pages, userId-only server tracks, redeliveries, and an
// identify (anonymousId + userId + email) for every even visitor in round 15. want maps each distinct event's id
// to the email it must end with ("" for visitors who never identify).
func crossStream(t *testing.T) ([]rawIn, map[string]string) {
	t.Helper()
	const visitors, rounds = 200, 30
	var ins []rawIn
	for r := range rounds {
		for v := range visitors {
			var p string
			switch {
			case r == 15 && v%2 == 0:
				p = fmt.Sprintf(`{"type":"identify","anonymousId":"a%d","userId":"u%d","messageId":"id%d","traits":{"email":"v%d@x.io"}}`, v, v, v, v)
			case r%3 == 0:
				p = fmt.Sprintf(`{"type":"track","userId":"u%d","event":"Server","messageId":"s%d-%d"}`, v, v, r)
			case r%7 == 6:
				p = fmt.Sprintf(`{"type":"page","anonymousId":"a%d","messageId":"p%d-%d","sentAt":"%d"}`, v, v, r-3, r) // redelivery
			default:
				p = fmt.Sprintf(`{"type":"page","anonymousId":"a%d","messageId":"p%d-%d","sentAt":"0"}`, v, v, r)
			}
			ins = append(ins, rawIn{"t", p})
		}
	}
	// Expected ids and the lead of each.
	want := map[string]string{} // id -> final email ("" when the visitor never identifies)
	for _, in := range ins {
		e := edgeRaw(t, "t", in.payload, time.Now())
		var v int
		id := e.AnonymousID + e.UserID
		fmt.Sscanf(id[1:], "%d", &v)
		want[e.SignalID] = ""
		if v%2 == 0 {
			want[e.SignalID] = fmt.Sprintf("v%d@x.io", v)
		}
	}

	return ins, want
}

// checkFinal waits until every event reached its final state, then checks the invariants: each (id, version)
// once, the emission counts of an id (versionCount) contiguous from 1, exactly the expected ids.
func checkFinal(t *testing.T, k *testenv.Kafka, want map[string]string) {
	t.Helper()
	// Wait until every identified visitor's events are linked, then check the invariants.
	var got []schemas.Signal
	deadline := time.Now().Add(90 * time.Second)
	for {
		got = readSignals(t, k, 1<<30, 3*time.Second)
		latest := map[string]schemas.Signal{}
		for _, s := range got {
			if s.Version > latest[s.SignalID].Version {
				latest[s.SignalID] = s
			}
		}
		pending := 0
		for id, email := range want {
			if l, ok := latest[id]; !ok || l.Email != email {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never reached their final state", pending, len(want))
		}
	}
	versions := map[string][]int64{}
	for _, s := range got {
		versions[s.SignalID] = append(versions[s.SignalID], versionCount(s.Version))
	}
	if len(versions) != len(want) {
		t.Errorf("%d distinct ids, want %d", len(versions), len(want))
	}
	for id, vs := range versions {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected id %s", id[:8])
		}
		sort.Slice(vs, func(i, j int) bool { return vs[i] < vs[j] })
		for i, v := range vs {
			if v != int64(i+1) {
				t.Fatalf("id %s has versions %v, want each of 1..n exactly once", id[:8], vs)
			}
		}
	}
	t.Logf("%d signals for %d events, each (id, version) once, all final", len(got), len(want))
}
