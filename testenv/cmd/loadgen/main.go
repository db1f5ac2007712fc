// Command loadgen posts generated Segment track events to a local ingest endpoint and reports accepted events/s
// and request latency percentiles. It only talks to loopback addresses and stops after -duration or -max-events,
// whichever comes first.
//
//	go run ./testenv/cmd/loadgen -batch 100 -concurrency 16 -duration 10s
//	go run ./testenv/cmd/loadgen -batch 1 -concurrency 32 -rate 5000 -duration 10s
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
	flag.Parse()
	if err := run(*target, *concurrency, *batch, *rate, *duration, *maxEvents, *visitors); err != nil {
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

// bodies pre-generates request bodies so that the generator spends its CPU on sending, not on building JSON:
// the two cores are shared with the edge and the broker.
func bodies(n, batch, visitors int) [][]byte {
	out := make([][]byte, n)
	seq := 0
	for i := range out {
		var b bytes.Buffer
		if batch > 1 {
			b.WriteByte('[')
		}
		for j := range batch {
			if j > 0 {
				b.WriteByte(',')
			}
			seq++
			fmt.Fprintf(&b, `{"type":"track","event":"Signed Up","anonymousId":"anon-%d","messageId":"lg-%d-%d",`+
				`"properties":{"plan":"pro","source":"landing","value":%d},"context":{"ip":"203.0.113.9",`+
				`"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing",`+
				`"path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},`+
				`"timestamp":"2026-11-30T05:00:00.000Z","sentAt":"2026-11-30T05:00:00.100Z"}`,
				seq%visitors, time.Now().UnixNano(), seq, seq)
		}
		if batch > 1 {
			b.WriteByte(']')
		}
		out[i] = b.Bytes()
	}
	return out
}

type result struct {
	mu        sync.Mutex
	latencies []time.Duration
	codes     map[int]int64
}

func run(target string, concurrency, batch int, rate float64, duration time.Duration, maxEvents int64, visitors int) error {
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
	pool := bodies(256, batch, visitors)
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
	var sent, accepted atomic.Int64
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
				body := pool[i%len(pool)]
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						codes[-1]++
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
				codes[resp.StatusCode]++
				if resp.StatusCode == http.StatusOK {
					accepted.Add(int64(batch))
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
	return nil
}
