package progress

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestSnapshotMath: rate is done per second so far, ETA the rest at that rate, percent capped at 100, and no ETA
// while it cannot be told.
func TestSnapshotMath(t *testing.T) {
	for _, tc := range []struct {
		s       Snapshot
		rate    float64
		eta     time.Duration
		etaOK   bool
		percent float64
		line    string
	}{
		{Snapshot{Done: 1200, Total: 5000, Elapsed: 4 * time.Second}, 300, 13 * time.Second, true, 24, "redrive 1200/5000 (24.0%), 300/s, ETA 13s"},
		{Snapshot{Done: 5000, Total: 5000, Elapsed: 10 * time.Second}, 500, 0, true, 100, "redrive 5000/5000 (100.0%), 500/s, ETA 0s"},
		{Snapshot{Done: 0, Total: 5000, Elapsed: time.Second}, 0, 0, false, 0, "redrive 0/5000 (0.0%), 0.0/s, ETA unknown"},
		{Snapshot{Done: 30, Total: 0, Elapsed: 2 * time.Second}, 15, 0, false, 0, "redrive 30, 15.0/s, ETA unknown"},
		{Snapshot{Done: 7, Total: 5, Elapsed: time.Second}, 7, 0, true, 100, "redrive 7/5 (100.0%), 7.0/s, ETA 0s"},
		{Snapshot{Done: 1, Total: 3601, Elapsed: time.Second}, 1, time.Hour, true, 100.0 / 3601, "redrive 1/3601 (0.0%), 1.0/s, ETA 1h0m0s"},
	} {
		eta, ok := tc.s.ETA()
		if tc.s.Rate() != tc.rate || eta != tc.eta || ok != tc.etaOK || tc.s.Percent() != tc.percent || tc.s.Line("redrive") != tc.line {
			t.Errorf("%+v: rate %v eta %v %v percent %v line %q; want %v %v %v %v %q", tc.s, tc.s.Rate(), eta, ok,
				tc.s.Percent(), tc.s.Line("redrive"), tc.rate, tc.eta, tc.etaOK, tc.percent, tc.line)
		}
	}
}

// TestLogLines: without a terminal a Meter logs periodic lines whose counts only grow, then one finished line
// with the final count; with a terminal it refreshes one line and logs only the last.
func TestLogLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	m := Start("redrive", 100, Options{Log: log, Every: time.Millisecond, Attrs: []any{"partition", 3}})
	for range 100 {
		m.Add(1)
		time.Sleep(100 * time.Microsecond)
	}
	time.Sleep(5 * time.Millisecond)
	m.Stop()
	m.Stop()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		lines = append(lines, v)
	}
	if len(lines) < 2 {
		t.Fatalf("%d lines, want periodic ones and the last:\n%s", len(lines), buf.String())
	}
	prev := -1.0
	for i, l := range lines {
		done := l["done"].(float64)
		if l["msg"] != "redrive progress" || l["total"].(float64) != 100 || done < prev || l["partition"].(float64) != 3 {
			t.Errorf("line %d: %v", i, l)
		}
		prev = done
		last := i == len(lines)-1
		if (l["finished"] == true) != last {
			t.Errorf("line %d: finished=%v", i, l["finished"])
		}
	}
	if last := lines[len(lines)-1]; last["done"].(float64) != 100 || last["percent"] != "100.0" {
		t.Errorf("last line %v", last)
	}

	buf.Reset()
	var term bytes.Buffer
	m = Start("restore", 10, Options{Log: log, Terminal: &term})
	m.Set(10)
	m.Stop()
	if !strings.Contains(term.String(), "\r\033[Krestore 10/10 (100.0%)") || !strings.HasSuffix(term.String(), "\n") {
		t.Errorf("terminal: %q", term.String())
	}
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("with a terminal, %d log lines, want only the last:\n%s", n, buf.String())
	}
}

// TestQuiet: a quiet Meter that ended before its first periodic line logs nothing; Discard never logs.
func TestQuiet(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	m := Start("restore", 10, Options{Log: log, Every: time.Hour, Quiet: true})
	m.Set(10)
	m.Stop()
	Start("restore", 10, Options{Log: log, Every: time.Hour}).Discard()
	if buf.Len() != 0 {
		t.Errorf("logged %s", buf.String())
	}
}
