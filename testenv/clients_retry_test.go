package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// What each real client does when the server answers an error: which statuses it retries, how many attempts,
// whether a retried batch keeps its events, which retry headers it adds. The capture server answers each
// event by the status the event asks for in properties.answer; every client is told to retry at most once
// (analytics-go cannot be told: it always makes 10 attempts), and to send one event per request, so one run
// per client measures every status at once.

// retryStatuses are answered on every attempt; "429ra" answers 429 with Retry-After: 1 once, then 200.
var retryStatuses = []string{"500", "503", "501", "429", "408", "400", "413", "429ra"}

// answerByEvent answers a request by properties.answer of its first event.
func answerByEvent(seen map[string]int) AnswerFunc {
	return func(r CapturedRequest, _ int) Answer {
		var body struct {
			Batch []struct {
				MessageID  string         `json:"messageId"`
				Properties map[string]any `json:"properties"`
			} `json:"batch"`
			Properties map[string]any `json:"properties"`
			MessageID  string         `json:"messageId"`
		}
		_ = json.Unmarshal(r.Decoded, &body)
		props, id := body.Properties, body.MessageID
		if len(body.Batch) > 0 {
			props, id = body.Batch[0].Properties, body.Batch[0].MessageID
		}
		want, _ := props["answer"].(string)
		seen[id]++ // under the capture server's lock: answers are decided one at a time
		switch {
		case want == "429ra" && seen[id] == 1:
			return Answer{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}}
		case want == "429ra" || want == "":
			return SegmentOK
		}
		code, _ := strconv.Atoi(want)
		return Answer{Status: code, Body: `{"code":"test","message":"answered ` + want + `"}`,
			Header: http.Header{"Content-Type": {"application/json"}}}
	}
}

type retryClient struct {
	name string
	run  func(ctx context.Context, cfg ClientConfig) error
	// maxRetries is the library's retry setting that allows exactly one retry (ClientConfig.MaxRetries).
	maxRetries int
	// attempts per status with that setting (analytics-go: always 10).
	attempts map[string]int
	// retryHeader: whether a retry carries X-Retry-Count: <n>; noHeader lists statuses whose retries do not.
	retryHeader bool
	noHeader    []string
	// byHeader lists statuses whose library attempts are counted by distinct X-Retry-Count values, since the
	// number of wire attempts is not the library's to decide.
	byHeader []string
	// newSentAt: whether a retried batch gets a new sentAt.
	newSentAt bool
}

var retriedOnce = map[string]int{"500": 2, "503": 2, "501": 1, "429": 2, "408": 2, "400": 1, "413": 1, "429ra": 2}

var retryClients = []retryClient{
	{name: "analytics-node", maxRetries: 1, attempts: retriedOnce, retryHeader: true, newSentAt: true,
		run: func(ctx context.Context, cfg ClientConfig) error { _, err := RunNodeClient(ctx, cfg); return err }},
	// A 429 with Retry-After puts the batch back on the queue and it is sent again as a new request: no
	// X-Retry-Count on it.
	{name: "analytics-python", maxRetries: 1, attempts: retriedOnce, retryHeader: true, noHeader: []string{"429ra"}, newSentAt: true,
		run: func(ctx context.Context, cfg ClientConfig) error { _, err := RunPythonClient(ctx, cfg); return err }},
	// maxRetryCount counts attempts: 2 allows one retry. Chromium itself resends a request answered 408 on a
	// reused keep-alive connection (up to twice) before the page sees the answer, so the wire count varies; the
	// library's own attempts are the distinct X-Retry-Count values.
	{name: "analytics.js", maxRetries: 2, retryHeader: true, byHeader: []string{"408"}, newSentAt: true,
		attempts: map[string]int{"500": 2, "503": 2, "501": 1, "429": 2, "408": 2, "400": 1, "413": 1, "429ra": 2},
		run: func(ctx context.Context, cfg ClientConfig) error {
			_, err := RunBrowserClient(ctx, cfg, false)
			return err
		}},
	// analytics-go retries every status from 300 up, 10 attempts, the same bytes each time.
	{name: "analytics-go", attempts: map[string]int{"500": 10, "503": 10, "501": 10, "429": 10, "408": 10, "400": 10, "413": 10, "429ra": 2},
		run: func(ctx context.Context, cfg ClientConfig) error {
			_, err := RunGoClient(ctx, cfg, 5*time.Millisecond)
			return err
		}},
}

func TestClientRetries(t *testing.T) {
	t.Parallel()
	for _, c := range retryClients {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := NewCaptureServer(t)
			seen := map[string]int{}
			s.SetAnswer(answerByEvent(seen))
			s.SetExposeHeaders("Retry-After") // see TestAnalyticsJSRetryAfterNeedsExposeHeaders
			var calls []Call
			for _, st := range retryStatuses {
				calls = append(calls, Call{Type: "track", UserID: capUser, Event: "Answer " + st, Properties: map[string]any{"answer": st}})
			}
			err := c.run(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: calls, MaxRetries: c.maxRetries, FlushAt: 1})
			if err == nil {
				t.Fatalf("%s reported every call delivered, though the server refused most", c.name)
			}
			perStatus := map[string][]CapturedRequest{}
			for _, r := range s.Sends() {
				evs := EventsOf(t, r.Decoded)
				if len(evs) != 1 {
					t.Fatalf("%s sent %d events in one request, want 1 (FlushAt 1)", c.name, len(evs))
				}
				st := evs[0]["properties"].(map[string]any)["answer"].(string)
				perStatus[st] = append(perStatus[st], r)
			}
			for _, st := range retryStatuses {
				rs := perStatus[st]
				if slices.Contains(c.byHeader, st) {
					var distinct []CapturedRequest
					for i, r := range rs {
						if i == 0 || r.Header.Get("X-Retry-Count") != rs[i-1].Header.Get("X-Retry-Count") {
							distinct = append(distinct, r)
						}
					}
					rs = distinct
				}
				if len(rs) != c.attempts[st] {
					t.Errorf("%s answered %s: %d attempts, want %d", c.name, st, len(rs), c.attempts[st])
				}
				for i, r := range rs {
					if slices.Contains(c.noHeader, st) {
						break
					}
					want := ""
					if c.retryHeader && i > 0 {
						want = strconv.Itoa(i)
					}
					if got := r.Header.Get("X-Retry-Count"); got != want {
						t.Errorf("%s answered %s, attempt %d: X-Retry-Count %q, want %q", c.name, st, i+1, got, want)
					}
				}
				if st == "429ra" && len(rs) == 2 && c.name != "analytics-go" {
					if gap := rs[1].At.Sub(rs[0].At); gap < 900*time.Millisecond {
						t.Errorf("%s retried a 429 with Retry-After: 1 after %v", c.name, gap)
					}
				}
			}
		})
	}
}

// TestClientRetryKeepsBatch: a batch refused once with 500 comes back whole: the same events, in the same order,
// under a new sentAt. Segment's servers may still regroup; these libraries do not.
func TestClientRetryKeepsBatch(t *testing.T) {
	t.Parallel()
	for _, c := range []retryClient{retryClients[0], retryClients[1], retryClients[3],
		{name: "analytics.js-batching", newSentAt: true,
			run: func(ctx context.Context, cfg ClientConfig) error {
				_, err := RunBrowserClient(ctx, cfg, true)
				return err
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := NewCaptureServer(t)
			s.SetAnswer(func(_ CapturedRequest, n int) Answer {
				if n == 0 {
					return Answer{Status: http.StatusInternalServerError}
				}
				return SegmentOK
			})
			if err := c.run(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: BatchCalls(capUser, 5), MaxRetries: 2}); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			sends := s.Sends()
			if len(sends) != 2 {
				t.Fatalf("%d requests, want the refused batch and its retry", len(sends))
			}
			ids := func(r CapturedRequest) []string {
				var out []string
				for _, e := range EventsOf(t, r.Decoded) {
					out = append(out, fmt.Sprint(e["messageId"]))
				}
				return out
			}
			if a, b := ids(sends[0]), ids(sends[1]); !slices.Equal(a, b) || len(a) != 5 {
				t.Errorf("retry carried %v, first attempt %v", b, a)
			}
			if a, b := sends[0].JSON(t)["sentAt"], sends[1].JSON(t)["sentAt"]; (a != b) != c.newSentAt {
				t.Errorf("batch sentAt %v, on the retry %v; want a new one: %v", a, b, c.newSentAt)
			}
			if !c.newSentAt && !bytes.Equal(sends[0].Body, sends[1].Body) {
				t.Errorf("%s's retry is not byte-identical to its first attempt", c.name)
			}
		})
	}
}

// TestAnalyticsJSRetryAfterNeedsExposeHeaders: a page's script reads Retry-After on a cross-origin answer only
// when the answer lists it in Access-Control-Expose-Headers; without it analytics.js falls back to its own
// backoff (well under the second asked for).
func TestAnalyticsJSRetryAfterNeedsExposeHeaders(t *testing.T) {
	t.Parallel()
	for _, expose := range []bool{false, true} {
		t.Run(fmt.Sprintf("expose=%v", expose), func(t *testing.T) {
			s := NewCaptureServer(t)
			s.SetAnswer(answerByEvent(map[string]int{}))
			if expose {
				s.SetExposeHeaders("Retry-After")
			}
			calls := []Call{{Type: "track", UserID: capUser, Event: "Answer 429ra", Properties: map[string]any{"answer": "429ra"}}}
			if _, err := RunBrowserClient(runCtx(t), ClientConfig{BaseURL: s.URL, WriteKey: capWriteKey, Calls: calls}, false); err != nil {
				t.Fatal(err)
			}
			sends := s.Sends()
			if len(sends) != 2 {
				t.Fatalf("%d attempts, want the 429 and its retry", len(sends))
			}
			gap := sends[1].At.Sub(sends[0].At)
			if honoured := gap >= 900*time.Millisecond; honoured != expose {
				t.Errorf("retry after %v with Expose-Headers %v: Retry-After: 1 honoured %v", gap, expose, honoured)
			}
		})
	}
}
