package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// stage is one signalstage binary running as a subprocess of the test.
type stage struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

// buildStages builds the three binaries once per test into a temp dir.
func buildStages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	cmd := exec.Command("go", "build", "-o", dir+"/", "./ingest/cmd/ingest", "./processor/cmd/processor", "./sink/cmd/sink")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building stages: %v\n%s", err, out)
	}
	return dir
}

func startStage(t *testing.T, bin, name string, args ...string) *stage {
	t.Helper()
	s := &stage{name: name, log: &bytes.Buffer{}}
	s.cmd = exec.Command(filepath.Join(bin, name), args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, s.log.String())
		}
	})
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// pipeline is the three binaries running against a test's own topics and database.
type pipeline struct {
	k    *Kafka
	ch   *ClickHouse
	bin  string // directory of the built binaries
	base string // ingest's base URL
	// common are the flags every stage and verb takes: brokers, topic prefix, partitions.
	common []string
	// stages by name: sink, processor, ingest.
	stages map[string]*stage
}

// startPipeline builds and starts sink, processor (with extra processor flags) and ingest, and waits until
// ingest is ready.
func startPipeline(t *testing.T, processorArgs ...string) *pipeline {
	t.Helper()
	return startPipelineWith(t, nil, processorArgs)
}

// startPipelineWith is startPipeline with extra sink flags too.
func startPipelineWith(t *testing.T, sinkArgs, processorArgs []string) *pipeline {
	t.Helper()
	return startPipelineOn(t, NewKafka(t, 3), NewClickHouse(t), stageArgs{sink: sinkArgs, processor: processorArgs})
}

// stageArgs are extra flags of each stage.
type stageArgs struct{ sink, processor, ingest []string }

// startPipelineOn is startPipeline on the topics of k (its brokers, prefix and partition count) and ch's database.
func startPipelineOn(t *testing.T, k *Kafka, ch *ClickHouse, extra stageArgs) *pipeline {
	t.Helper()
	p := &pipeline{k: k, ch: ch, bin: buildStages(t), stages: map[string]*stage{}}
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")

	p.common = []string{"-brokers", strings.Join(p.k.Brokers, ","), "-topic-prefix", p.k.Prefix, "-partitions",
		fmt.Sprint(k.Topics.Partitions)}
	flags := func(more ...[]string) []string { return slices.Concat(append([][]string{p.common}, more...)...) }
	ingestAddr := freeAddr(t)
	p.stages["sink"] = startStage(t, p.bin, "sink", flags([]string{"-clickhouse-addr", p.ch.Addr, "-clickhouse-database", p.ch.Database,
		"-metrics-addr", freeAddr(t)}, extra.sink)...)
	p.stages["processor"] = startStage(t, p.bin, "processor", flags([]string{"-state-dir", t.TempDir()}, extra.processor)...)
	p.stages["ingest"] = startStage(t, p.bin, "ingest", flags([]string{"-addr", ingestAddr, "-admin-addr", freeAddr(t), "-keys", keys}, extra.ingest)...)

	p.base = "http://" + ingestAddr
	waitFor(t, 60*time.Second, "ingest /readyz", func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// TestWalkingSkeleton drives the whole pipeline as a user would: the three binaries against the real Kafka and
// ClickHouse, a Segment track event posted over HTTP, and the row read back from signalstage's signals table.
func TestWalkingSkeleton(t *testing.T) {
	p := startPipeline(t, "-admin-addr", freeAddr(t))
	ch, base := p.ch, p.base

	post := func(key, body string) (int, string) {
		resp, err := http.Post(base+"/api/signal-staging/webhook/"+key, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	if code, body := post("dev-key", `{"type":"track"`); code != http.StatusBadRequest || !strings.Contains(strings.ToLower(body), "json") {
		t.Fatalf("not JSON: got %d %q, want 400 with a readable message about JSON", code, body)
	}
	if code, _ := post("no-such-key", `{"type":"track","event":"x","anonymousId":"a"}`); code != http.StatusUnauthorized {
		t.Fatalf("unknown key: got %d, want 401", code)
	}

	msg := fmt.Sprintf("m-%d", time.Now().UnixNano())
	event := `{"type":"track","event":"Demo Requested","anonymousId":"anon-e2e","messageId":"` + msg +
		`","properties":{"form_name":"demo"},"timestamp":"2026-11-30T10:00:00Z"}`
	sent := time.Now()
	if code, body := post("dev-key", event); code != http.StatusOK {
		t.Fatalf("track: got %d %s, want 200", code, body)
	}

	var tenant, typ, ev, anon, source string
	waitFor(t, 90*time.Second, "the event as a row in signals", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := ch.Conn.QueryRow(ctx, "SELECT tenant, source, type, event, anonymous_id FROM signals FINAL WHERE message_id = ?", msg).
			Scan(&tenant, &source, &typ, &ev, &anon)
		return err == nil
	})
	t.Logf("event visible in ClickHouse %v after the 200", time.Since(sent).Round(time.Millisecond))
	if tenant != "dev" || source != "segment" || typ != "track" || ev != "Demo Requested" || anon != "anon-e2e" {
		t.Fatalf("row = tenant %q source %q type %q event %q anonymous_id %q", tenant, source, typ, ev, anon)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
