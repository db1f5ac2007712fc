package processor

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signalstage/signalstage/testenv"
)

// TestRestoreProgress: a processor on a fresh disk restores its partitions from the changelog another instance
// wrote, and logs "restore progress" lines (schemas/progress; stderr of a server is never a terminal) whose
// done only grows up to the changelog partition's total, for every partition restored.
func TestRestoreProgress(t *testing.T) {
	k := testenv.NewKafka(t, 2)
	var ins []rawIn
	for i := range 3000 {
		ins = append(ins, rawIn{"t", track(fmt.Sprintf("v%d", i), "", "Viewed", "")})
	}
	produce(t, k, ins...)
	first := startProcessor(t, k, t.TempDir(), "p1", nil)
	settle(t, k, len(ins), 2*time.Second)
	first.stop(t)

	var log lockedBuffer
	second := startProcessor(t, k, t.TempDir(), "p2", func(c *Config) {
		c.RestoreProgress = time.Millisecond
		c.Logger = slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	deadline := time.Now().Add(90 * time.Second)
	for strings.Count(log.String(), `"restored partition state"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	second.stop(t)
	last := map[float64]map[string]any{}
	for _, l := range strings.Split(log.String(), "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) != nil || v["msg"] != "restore progress" {
			continue
		}
		part := v["partition"].(float64)
		done, total := v["done"].(float64), v["total"].(float64)
		if prev := last[part]; total <= 0 || done > total || prev != nil && (done < prev["done"].(float64) || total != prev["total"].(float64)) {
			t.Errorf("partition %v: progress line %v after %v", part, v, prev)
		}
		last[part] = v
	}
	if len(last) != 2 {
		t.Fatalf("progress lines for %d partitions, want 2; log:\n%s", len(last), log.String())
	}
	for part, v := range last {
		if v["finished"] != true || v["done"] != v["total"] || v["percent"] != "100.0" {
			t.Errorf("partition %v: last progress line %v, want finished with done = total", part, v)
		}
		t.Logf("partition %v: last progress line %v", part, v)
	}
}

// lockedBuffer is a log writer safe for the processor's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
