// Command loadgen posts generated Segment track events to a local ingest endpoint and reports accepted events/s
// and request latency percentiles. It only talks to loopback addresses and stops after -duration or -max-events,
// whichever comes first.
//
//	go run ./testenv/cmd/loadgen -batch 100 -concurrency 16 -duration 10s
//	go run ./testenv/cmd/loadgen -batch 1 -concurrency 32 -rate 5000 -duration 10s
//	go run ./testenv/cmd/loadgen -mix segment -max-events 1000000 -visitors 20000 -run r1 -duration 10m
//
// The default mix, track, cycles through 256 pre-generated bodies (after the first 256 requests every event is a
// duplicate): it measures the edge. The segment mix is what the pipeline benchmark sends: every event new (message
// ids carry -run), -identify-pct of them identifies with an email per visitor, the rest tracks and pages, and
// -resend-pct of the requests posted twice, as Segment's retries do; -max-events counts new events only.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("url", "http://127.0.0.1:8080/api/signal-staging/webhook/dev-key", "ingest endpoint (loopback only)")
	concurrency := flag.Int("concurrency", 16, "concurrent connections (keep-alive)")
	batch := flag.Int("batch", 100, "events per request; 1 posts a single event object")
	rate := flag.Float64("rate", 0, "target events per second across all connections; 0 = as fast as possible")
	duration := flag.Duration("duration", 10*time.Second, "how long to send (at most 10m)")
	maxEvents := flag.Int64("max-events", 50_000_000, "stop after this many events")
	visitors := flag.Int("visitors", 100_000, "distinct anonymousIds")
	mixName := flag.String("mix", "track", "track (256 bodies, cycled: an edge benchmark) or segment (every event new, identifies, re-sends)")
	identifyPct := flag.Float64("identify-pct", 5, "segment mix: percent of events that are identifies")
	resendPct := flag.Float64("resend-pct", 5, "segment mix: percent of requests posted a second time")
	runID := flag.String("run", "", "segment mix: part of every message id, so that two runs send different events (default: the start time)")
	flag.Parse()
	m, err := newMix(*mixName, *batch, *visitors, *identifyPct, *resendPct, *runID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if err := run(*target, *concurrency, *batch, *rate, *duration, *maxEvents, m); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// checkLoopback refuses any target that is not this machine.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("-url: %w", err)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-url: %q is not a loopback address; loadgen only targets this machine", host)
}

type result struct {
	mu        sync.Mutex
	latencies []time.Duration
	codes     map[int]int64
}

func run(target string, concurrency, batch int, rate float64, duration time.Duration, maxEvents int64, m *mix) error {
	if err := checkLoopback(target); err != nil {
		return err
	}
	switch {
	case concurrency < 1 || concurrency > 1024:
		return fmt.Errorf("-concurrency must be in 1..1024")
	case batch < 1 || batch > 4000:
		return fmt.Errorf("-batch must be in 1..4000")
	case duration <= 0 || duration > 10*time.Minute:
		return fmt.Errorf("-duration must be in (0, 10m]")
	case maxEvents < 1:
		return fmt.Errorf("-max-events must be positive")
	}
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, IdleConnTimeout: time.Minute,
		DisableCompression: true,
	}}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()

	// With -rate, request k is due at start + k*interval: workers claim slots in order and sleep until theirs,
	// so the rate holds even when a ticker could not fire that often, and a late worker catches up at once.
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(batch) / rate)
	}
	var slot atomic.Int64
	res := &result{codes: map[int]int64{}}
	var sent, accepted, resent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			codes := map[int]int64{}
			for i := w; ; i += concurrency {
				if interval > 0 {
					due := start.Add(time.Duration(slot.Add(1)-1) * interval)
					if d := time.Until(due); d > 0 {
						select {
						case <-ctx.Done():
						case <-time.After(d):
						}
					}
				}
				if ctx.Err() != nil || sent.Add(int64(batch)) > maxEvents {
					break
				}
				body, again := m.body(i)
				for try := 0; try < 2; try++ {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							codes[-1]++
						}
						break
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					lat = append(lat, time.Since(t0))
					codes[resp.StatusCode]++
					if resp.StatusCode != http.StatusOK {
						break
					}
					if try == 0 {
						accepted.Add(int64(batch))
					} else {
						resent.Add(int64(batch))
					}
					if !again {
						break
					}
				}
			}
			res.mu.Lock()
			res.latencies = append(res.latencies, lat...)
			for c, n := range codes {
				res.codes[c] += n
			}
			res.mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(res.latencies)
	pct := func(p float64) time.Duration {
		if len(res.latencies) == 0 {
			return 0
		}
		return res.latencies[min(len(res.latencies)-1, int(p*float64(len(res.latencies))))]
	}
	fmt.Printf("batch=%d concurrency=%d rate=%.0f duration=%s requests=%d statuses=%v\n",
		batch, concurrency, rate, elapsed.Round(time.Millisecond), len(res.latencies), res.codes)
	fmt.Printf("accepted %d events, %.0f events/s; latency p50=%s p99=%s max=%s\n",
		accepted.Load(), float64(accepted.Load())/elapsed.Seconds(),
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
	// One line for scripts (the pipeline benchmark): new events accepted, and events accepted a second time.
	fmt.Printf("result accepted=%d resent=%d\n", accepted.Load(), resent.Load())
	return nil
}
