package testenv

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

// TestIngestDrainOnSIGTERM runs the ingest binary, keeps 8 clients posting events, and sends SIGTERM. /readyz
// on the admin listener must answer 503 while the public listener still accepts events (-drain-grace), the
// process must exit 0, and every event answered 200 must be in signals.raw. Metrics are on the admin listener
// only.
func TestIngestDrainOnSIGTERM(t *testing.T) {
	k := NewKafka(t, 3)
	bin := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Dir(filepath.Dir(file))
	build := exec.Command("go", "build", "-o", bin+"/", "./ingest/cmd/ingest")
	build.Dir = repo
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building ingest: %v\n%s", err, out)
	}
	addr, admin := freeAddr(t), freeAddr(t)
	s := startStage(t, bin, "ingest", "-brokers", strings.Join(k.Brokers, ","), "-topic-prefix", k.Prefix,
		"-partitions", "3", "-addr", addr, "-admin-addr", admin, "-drain-grace", "3s",
		"-keys", filepath.Join(filepath.Dir(file), "dev-keys.json"))
	public, adminURL := "http://"+addr, "http://"+admin
	waitFor(t, 60*time.Second, "ingest /readyz on the admin listener", func() bool { return httpStatus(adminURL+"/readyz") == 200 })
	if c := httpStatus(adminURL + "/metrics"); c != 200 {
		t.Fatalf("admin /metrics: %d", c)
	}
	if c := httpStatus(public + "/metrics"); c != http.StatusNotFound {
		t.Fatalf("public /metrics: %d, want 404 (metrics carry per-tenant labels: admin listener only)", c)
	}

	var mu sync.Mutex
	var accepted []string
	post := func(id string) (int, error) {
		body := fmt.Sprintf(`{"type":"track","event":"Drain","anonymousId":"a-%s","messageId":%q}`, id, id)
		resp, err := http.Post(public+"/api/signal-staging/webhook/dev-key", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			mu.Lock()
			accepted = append(accepted, id)
			mu.Unlock()
		}
		return resp.StatusCode, nil
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := post(fmt.Sprintf("drain-%d-%d", w, i)); err != nil {
					return // the listener closed
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "/readyz to answer 503 after SIGTERM", func() bool { return httpStatus(adminURL+"/readyz") == 503 })
	if c, err := post("after-not-ready"); err != nil || c != 200 {
		t.Fatalf("an event posted once /readyz said 503: %d %v, want 200 (the listener stays open for -drain-grace)", c, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(40 * time.Second):
		t.Fatal("ingest did not exit within 40s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("ingest exited with %v\n%s", err, s.log)
	}

	seen := map[string]bool{}
	for _, r := range k.ReadToEnd(k.Topic(schemas.TopicRaw), 30*time.Second) {
		var ev schemas.RawEvent
		if err := schemas.DecodeRawEvent(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		seen[ev.MessageID] = true
	}
	var lost []string
	for _, id := range accepted {
		if !seen[id] {
			lost = append(lost, id)
		}
	}
	t.Logf("%d events answered 200 across the drain, %d records in signals.raw", len(accepted), len(seen))
	if len(lost) > 0 || len(accepted) < 2 {
		t.Fatalf("%d of %d accepted events are not in signals.raw: %v", len(lost), len(accepted), lost[:min(len(lost), 5)])
	}
	if !strings.Contains(s.log.String(), "draining") {
		t.Fatalf("no drain in the log:\n%s", s.log)
	}
}
