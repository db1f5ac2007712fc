// Package progress reports how far a long operator task has got: done of total, the rate, and the time left
// (ETA), for `processor replay -follow`, `sink redrive` and the processor's state restore, written once here.
//
// On a terminal a Meter refreshes one line on stderr; otherwise (a pod's log, a CI job, a pipe) it logs a line
// every interval through slog, so that the progress is in the log the operator already reads:
//
//	m := progress.Start("redrive", total, progress.Options{Log: log, Terminal: progress.StderrTerminal()})
//	for ... { m.Add(1) }
//	m.Stop() // the last line: done, total, how long it took
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultEvery is how often a Meter logs when no terminal is attached.
const DefaultEvery = 5 * time.Second

// terminalEvery is how often the terminal line refreshes.
const terminalEvery = 250 * time.Millisecond

// Options say where a Meter reports.
type Options struct {
	// Log receives a "progress" line every Every (with no Terminal) and the last line at Stop. Default
	// slog.Default().
	Log *slog.Logger
	// Terminal, when set, receives a line refreshed in place instead of the periodic log lines (see
	// StderrTerminal).
	Terminal io.Writer
	// Every is the interval of the log lines (default DefaultEvery); negative logs only the last line.
	Every time.Duration
	// Attrs are added to every log line (the partition a restore is for).
	Attrs []any
	// Quiet leaves out the last line of a task that ended before its first periodic one (a server restoring six
	// small partitions at start need not log twelve lines).
	Quiet bool
}

// StderrTerminal returns os.Stderr when it is a terminal, else nil.
func StderrTerminal() io.Writer {
	fi, err := os.Stderr.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return os.Stderr
}

// Meter counts the progress of one task. Add, Set and SetTotal are safe from any goroutine.
type Meter struct {
	what        string
	opt         Options
	start       time.Time
	done, total atomic.Int64
	stop        chan struct{}
	stopped     sync.WaitGroup
	logged      atomic.Bool // a periodic line was written
	once        sync.Once
}

// Start starts reporting the progress of what (a word: "redrive", "restore") towards total units (records,
// dead letters); total may be 0 when not known yet (SetTotal).
func Start(what string, total int64, opt Options) *Meter {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	if opt.Every == 0 {
		opt.Every = DefaultEvery
	}
	m := &Meter{what: what, opt: opt, start: time.Now(), stop: make(chan struct{})}
	m.total.Store(total)
	every := opt.Every
	if opt.Terminal != nil {
		every = terminalEvery
	}
	if every > 0 {
		m.stopped.Add(1)
		go m.loop(every)
	}
	return m
}

// Add counts n more units done. A nil Meter does nothing (so that a caller without progress needs no checks).
func (m *Meter) Add(n int64) {
	if m != nil {
		m.done.Add(n)
	}
}

// Set says how many units are done so far.
func (m *Meter) Set(done int64) {
	if m != nil {
		m.done.Store(done)
	}
}

// SetTotal changes the total.
func (m *Meter) SetTotal(total int64) {
	if m != nil {
		m.total.Store(total)
	}
}

// Snapshot is the progress at one moment.
func (m *Meter) Snapshot() Snapshot {
	return Snapshot{Done: m.done.Load(), Total: m.total.Load(), Elapsed: time.Since(m.start)}
}

// Stop ends the reporting with a last log line (and ends the terminal line). Calling it again does nothing.
func (m *Meter) Stop() {
	if m == nil {
		return
	}
	m.once.Do(func() {
		close(m.stop)
		m.stopped.Wait()
		s := m.Snapshot()
		if m.opt.Terminal != nil {
			fmt.Fprintf(m.opt.Terminal, "\r\033[K%s\n", s.Line(m.what))
		}
		if !m.opt.Quiet || m.logged.Load() {
			m.opt.Log.Info(m.what+" progress", append(s.attrs(true), m.opt.Attrs...)...)
		}
	})
}

// Discard ends the reporting without a last line (a task that failed, or one that logs its own summary).
func (m *Meter) Discard() {
	if m == nil {
		return
	}
	m.once.Do(func() {
		close(m.stop)
		m.stopped.Wait()
		if m.opt.Terminal != nil {
			fmt.Fprint(m.opt.Terminal, "\r\033[K")
		}
	})
}

func (m *Meter) loop(every time.Duration) {
	defer m.stopped.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			s := m.Snapshot()
			m.logged.Store(true)
			if m.opt.Terminal != nil {
				fmt.Fprintf(m.opt.Terminal, "\r\033[K%s", s.Line(m.what))
				continue
			}
			m.opt.Log.Info(m.what+" progress", append(s.attrs(false), m.opt.Attrs...)...)
		}
	}
}

// Snapshot is a Meter's progress at one moment.
type Snapshot struct {
	Done, Total int64
	Elapsed     time.Duration
}

// Rate is the units done per second since the start (0 before any time has passed).
func (s Snapshot) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Done) / s.Elapsed.Seconds()
}

// ETA is the time left at the rate so far; ok is false while it cannot be told (no total, nothing done yet).
func (s Snapshot) ETA() (eta time.Duration, ok bool) {
	if s.Total <= 0 || s.Done <= 0 {
		return 0, false
	}
	if s.Done >= s.Total {
		return 0, true
	}
	left := float64(s.Total-s.Done) / s.Rate()
	return time.Duration(left * float64(time.Second)).Round(time.Second), true
}

// Percent is Done of Total in percent, at most 100 (0 without a total).
func (s Snapshot) Percent() float64 {
	if s.Total <= 0 {
		return 0
	}
	return min(100, 100*float64(s.Done)/float64(s.Total))
}

// Line is the terminal form: "redrive 1200/5000 (24.0%), 310/s, ETA 12s".
func (s Snapshot) Line(what string) string {
	eta := "ETA unknown"
	if d, ok := s.ETA(); ok {
		eta = "ETA " + d.String()
	}
	if s.Total <= 0 {
		return fmt.Sprintf("%s %d, %s/s, %s", what, s.Done, rate(s.Rate()), eta)
	}
	return fmt.Sprintf("%s %d/%d (%.1f%%), %s/s, %s", what, s.Done, s.Total, s.Percent(), rate(s.Rate()), eta)
}

func rate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func (s Snapshot) attrs(finished bool) []any {
	a := []any{"done", s.Done, "total", s.Total, "percent", fmt.Sprintf("%.1f", s.Percent()),
		"rate_per_s", rate(s.Rate()), "elapsed", s.Elapsed.Round(time.Millisecond).String()}
	if eta, ok := s.ETA(); ok && !finished {
		a = append(a, "eta", eta.String())
	}
	if finished {
		a = append(a, "finished", true)
	}
	return a
}
