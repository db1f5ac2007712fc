package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/testenv"
)

// testKeys is the registry most tests use.
const testKeys = `{"keys": {
  "dev-key":    {"id": "dev", "tenant": "dev", "endpoint_type": "signal-staging"},
  "secret-key": {"id": "sec", "tenant": "acme", "endpoint_type": "signal-staging", "secret_hash": "%s"},
  "signed-key": {"id": "sig", "tenant": "acme", "endpoint_type": "signal-staging", "signing_secret": "shh"},
  "other-key":  {"id": "oth", "tenant": "acme", "endpoint_type": "crm-sync"},
  "revoked-key":{"id": "rev", "tenant": "acme", "endpoint_type": "signal-staging", "revoked": true},
  "small-key":  {"id": "small", "tenant": "tiny", "endpoint_type": "signal-staging", "monthly_limit": 5}
}}`

// edge is a running Server on a loopback port against the real broker, with its own topics.
type edge struct {
	srv   *Server
	url   string
	kafka *testenv.Kafka
	keys  string // registry file path
	reg   *prometheus.Registry
	stop  func() error
}

func writeKeys(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startEdge runs a Server until the test ends. mod may adjust the config.
func startEdge(t *testing.T, mod func(*Config)) *edge {
	t.Helper()
	k := testenv.NewKafka(t, 6)
	keys := filepath.Join(t.TempDir(), "keys.json")
	writeKeys(t, keys, fmt.Sprintf(testKeys, HashSecret("s3cret")))
	return runEdge(t, k, keys, mod)
}

// startEdgeOn runs another replica on the topics and key file of first.
func startEdgeOn(t *testing.T, first *edge, mod func(*Config)) *edge {
	t.Helper()
	return runEdge(t, first.kafka, first.keys, mod)
}

func runEdge(t *testing.T, k *testenv.Kafka, keys string, mod func(*Config)) *edge {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listener: ln, Brokers: k.Brokers, TopicPrefix: k.Prefix, Partitions: 6, Replication: schemas.Replication{Factor: 1},
		KeysFile: keys, KeysPollInterval: 50 * time.Millisecond, ReplicaID: "r1", UsageInterval: 50 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	e := &edge{srv: srv, url: "http://" + ln.Addr().String(), kafka: k, keys: keys, reg: srv.cfg.Registry}
	var stopped bool
	var runErr error
	e.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(e.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type response struct {
	Accepted int `json:"accepted"`
	Rejected []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"rejected"`
	Error string `json:"error"`
}

// post sends body to path with headers and decodes the JSON answer.
func post(t *testing.T, url string, body []byte, hdr map[string]string) (*http.Response, response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, raw)
	}
	return resp, r
}

func (e *edge) webhook(key string) string { return e.url + "/api/signal-staging/webhook/" + key }

// readRaw reads exactly the records of the edge's signals.raw, decoded. It first asks the broker how many the
// topic holds (end offsets: exact, no waiting for "nothing more arrives"), then reads that many.
func (e *edge) readRaw(t *testing.T) ([]*kgo.Record, []schemas.RawEvent) {
	t.Helper()
	recs := e.readExact(t, schemas.TopicRaw)
	evs := make([]schemas.RawEvent, len(recs))
	for i, r := range recs {
		if err := schemas.RawEvents.Decode(r.Value, &evs[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	return recs, evs
}

// readExact reads every record of topic base: as many as the sum of its end offsets (the topics are fresh and
// written without transactions, so offsets count records).
func (e *edge) readExact(t *testing.T, base string) []*kgo.Record {
	t.Helper()
	topic := e.kafka.Topic(base)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A fresh client: kadm answers from kgo's cached metadata, and the shared admin client may still hold
	// "unknown topic" from the check NewKafka made before creating it.
	ends, err := kadm.NewClient(e.kafka.Client()).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		n += o.Offset
	})
	if len(ends[topic]) == 0 {
		t.Fatalf("no end offsets for %s: %v", topic, ends.Error())
	}
	recs := e.kafka.ReadAll(topic, int(n), 30*time.Second)
	if int64(len(recs)) != n {
		t.Fatalf("read %d records of %s, its end offsets say %d", len(recs), topic, n)
	}
	return recs
}

// trackEvent is a Segment track call of about 400 bytes.
func trackEvent(anon string, n int) []byte {
	return fmt.Appendf(nil, `{"type":"track","event":"Signed Up","anonymousId":%q,"messageId":"msg-%s-%d",`+
		`"properties":{"plan":"pro","source":"landing","value":%d},"context":{"ip":"203.0.113.9",`+
		`"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing",`+
		`"path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},`+
		`"timestamp":"2026-11-30T05:00:00.000Z","sentAt":"2026-11-30T05:00:00.100Z"}`, anon, anon, n, n)
}

// expectedPartition is where kgo's default partitioner (murmur2 like Kafka's) puts key among n partitions.
func expectedPartition(topic string, key []byte, n int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: key}, n))
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
