package testenv

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/signalstage/signalstage/schemas"
)

// TestRegistryPipeline drives the pipeline in registry mode against the real Schema Registry: sink, processor
// and one ingest run with -schema-registry, a second ingest without it, on the same topics. An event through
// each ingest lands in ClickHouse, so the processor reads both formats; the records ingest and the processor
// wrote in registry mode are framed with the ids registered under <topic>-value; a single-object signal
// produced straight to signals.resolved is loaded by the registry-mode sink; a raw record naming an id the
// registry does not have is dead-lettered saying so; `sink tail` reads both formats with the registry and
// names the missing registry without it.
func TestRegistryPipeline(t *testing.T) {
	url := NewSchemaRegistry(t)
	k, ch, bin := NewKafka(t, 3), NewClickHouse(t), buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3"}
	reg := []string{"-schema-registry", url}
	with := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	startStage(t, bin, "sink", with(common, reg, []string{"-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database,
		"-metrics-addr", freeAddr(t)})...)
	startStage(t, bin, "processor", with(common, reg, []string{"-state-dir", t.TempDir(), "-admin-addr", freeAddr(t)})...)
	framedAddr, plainAddr := freeAddr(t), freeAddr(t)
	startStage(t, bin, "ingest", with(common, reg, []string{"-addr", framedAddr, "-admin-addr", freeAddr(t), "-keys", keys,
		"-replica-id", "framed"})...)
	startStage(t, bin, "ingest", with(common, []string{"-addr", plainAddr, "-admin-addr", freeAddr(t), "-keys", keys,
		"-replica-id", "plain"})...)
	for _, addr := range []string{framedAddr, plainAddr} {
		waitFor(t, 90*time.Second, "ingest /readyz on "+addr, func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	run := fmt.Sprint(time.Now().UnixNano())
	post := func(addr, msg string) {
		t.Helper()
		body := `{"type":"track","event":"Demo Requested","anonymousId":"anon-` + msg + `","messageId":"` + msg +
			`","timestamp":"2026-11-30T10:00:00Z"}`
		resp, err := http.Post("http://"+addr+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("posting %s: %d %s", msg, resp.StatusCode, b)
		}
	}
	framedMsg, plainMsg, directMsg := "framed-"+run, "plain-"+run, "direct-"+run
	post(framedAddr, framedMsg)
	post(plainAddr, plainMsg)

	// A single-object signal, as a processor without a registry writes it, straight to signals.resolved.
	direct, err := schemas.EncodeSignal(&schemas.Signal{Tenant: "dev", SignalID: "sig-" + directMsg, Version: 1,
		Status: schemas.StatusCold, Source: schemas.SourceSegment, Type: "track", Event: "Demo Requested",
		MessageID: directMsg, AnonymousID: "anon-" + directMsg, ReceivedAt: time.Now().UTC().Truncate(time.Millisecond),
		EventTime: time.Now().UTC().Truncate(time.Millisecond), ProcessedAt: time.Now().UTC().Truncate(time.Millisecond),
		Payload: []byte(`{"type":"track"}`)})
	if err != nil {
		t.Fatal(err)
	}
	// A raw record in the registry wire format whose id the registry has never given out.
	unknown := []byte{0x00, 0x7f, 0xff, 0xff, 0xf0, 0x02, 0x02}
	cl := k.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx,
		&kgo.Record{Topic: k.Topic(schemas.TopicResolved), Key: schemas.RoutingKey("dev", "anon-"+directMsg), Value: direct},
		&kgo.Record{Topic: k.Topic(schemas.TopicRaw), Key: schemas.RoutingKey("dev", "unknown-"+run), Value: unknown},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}

	for _, msg := range []string{framedMsg, plainMsg, directMsg} {
		waitFor(t, 90*time.Second, msg+" as a row in signals", func() bool {
			c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var n uint64
			return ch.Conn.QueryRow(c, "SELECT count() FROM signals FINAL WHERE message_id = ?", msg).Scan(&n) == nil && n == 1
		})
	}
	var reason string
	waitFor(t, 90*time.Second, "the unknown id's dead letter", func() bool {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return ch.Conn.QueryRow(c, "SELECT reason FROM dead_letters WHERE stage = 'processor' AND position(reason, 'schema id') > 0 LIMIT 1").
			Scan(&reason) == nil
	})
	if !strings.Contains(reason, "schema id unknown to the schema registry") || !strings.Contains(reason, "2147483632") {
		t.Fatalf("dead letter reason %q: want the unknown id named", reason)
	}

	// The framing of what was written: ingest in registry mode with raw_event's id, the plain one single-object,
	// the processor's signals all with signal's id.
	srcl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	idOf := func(topic string) int {
		s, err := srcl.SchemaByVersion(ctx, schemas.Subject(topic), -1)
		if err != nil {
			t.Fatalf("subject of %s: %v", topic, err)
		}
		return s.ID
	}
	rawID, sigID := idOf(k.Topic(schemas.TopicRaw)), idOf(k.Topic(schemas.TopicResolved))
	framing := func(v []byte) string {
		switch {
		case len(v) > 5 && v[0] == 0:
			return fmt.Sprintf("id %d", binary.BigEndian.Uint32(v[1:5]))
		case len(v) > 10 && v[0] == 0xC3 && v[1] == 0x01:
			return "single-object"
		}
		return "other"
	}
	seen := map[string]string{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicRaw), 30*time.Second) {
		var ev schemas.RawEvent
		if schemas.DecodeRawEvent(r.Value, &ev) == nil || bytes.Equal(r.Value, unknown) {
			continue // single-object (decodable without a registry), or the unknown id
		}
		seen["raw framed"] = framing(r.Value)
	}
	if want := fmt.Sprintf("id %d", rawID); seen["raw framed"] != want {
		t.Fatalf("ingest's registry-mode record: %q, want %q", seen["raw framed"], want)
	}
	var framedSignals int
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicResolved), 30*time.Second) {
		if bytes.Equal(r.Value, direct) {
			continue
		}
		if f := framing(r.Value); f != fmt.Sprintf("id %d", sigID) {
			t.Fatalf("processor wrote a signal framed %q, want id %d", f, sigID)
		}
		framedSignals++
	}
	if framedSignals < 2 {
		t.Fatalf("%d registry-framed signals on signals.resolved, want the 2 posted", framedSignals)
	}

	// sink tail: with the registry every record views; without it a registry-framed record names what is missing.
	tail := func(extra ...string) []map[string]any {
		t.Helper()
		c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(c, filepath.Join(bin, "sink"), with([]string{"tail"}, common, extra,
			[]string{"-topic", schemas.TopicResolved, "-from-beginning", "-n", fmt.Sprint(framedSignals + 1)})...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sink tail %v: %v\n%s", extra, err, stderr.String())
		}
		var lines []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("tail line %q: %v", l, err)
			}
			lines = append(lines, m)
		}
		return lines
	}
	msgs := map[string]bool{}
	for _, l := range tail(reg...) {
		if e, ok := l["error"]; ok {
			t.Fatalf("tail with the registry: error %v", e)
		}
		v, _ := l["value"].(map[string]any)
		msgs[fmt.Sprint(v["message_id"])] = true
	}
	for _, m := range []string{framedMsg, plainMsg, directMsg} {
		if !msgs[m] {
			t.Fatalf("tail with the registry: no %s in %v", m, msgs)
		}
	}
	var noRegistry int
	for _, l := range tail() {
		if e, _ := l["error"].(string); strings.Contains(e, "no schema registry is configured") {
			noRegistry++
		}
	}
	if noRegistry != framedSignals {
		t.Fatalf("tail without the registry: %d lines name the missing registry, want %d", noRegistry, framedSignals)
	}
}

// TestRegistryDownAtStart: each stage given a registry that does not answer exits at start, naming it.
func TestRegistryDownAtStart(t *testing.T) {
	NewSchemaRegistry(t) // the suite's gate; the registry used here is a closed port
	k, ch, bin := NewKafka(t, 3), NewClickHouse(t), buildStages(t)
	_, file, _, _ := runtime.Caller(0)
	keys := filepath.Join(filepath.Dir(file), "dev-keys.json")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() + "/apis/ccompat/v7"
	ln.Close()
	common := []string{"-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix, "-partitions", "3", "-schema-registry", down}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ingest", []string{"-addr", freeAddr(t), "-admin-addr", freeAddr(t), "-keys", keys}},
		{"processor", []string{"-state-dir", t.TempDir(), "-admin-addr", freeAddr(t)}},
		{"sink", []string{"-clickhouse-addr", ch.Addr, "-clickhouse-database", ch.Database, "-metrics-addr", freeAddr(t)}},
		{"sink", []string{"tail", "-topic", schemas.TopicResolved, "-n", "1"}},
	} {
		args := append(append([]string(nil), common...), tc.args...)
		if tc.args[0] == "tail" {
			args = append([]string{"tail"}, append(common, tc.args[1:]...)...)
		}
		c, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		out, err := exec.CommandContext(c, filepath.Join(bin, tc.name), args...).CombinedOutput()
		timedOut := c.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%s %v still running after 90s with the registry down:\n%s", tc.name, tc.args[:1], out)
		}
		if err == nil || !strings.Contains(string(out), "schema registry unavailable") || !strings.Contains(string(out), down) {
			t.Fatalf("%s %v: %v, output:\n%s\nwant a failure naming the unavailable registry %s", tc.name, tc.args[:1], err, out, down)
		}
	}
}
