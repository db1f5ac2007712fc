package testenv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	analytics "github.com/segmentio/analytics-go/v3"
)

// RunGoClient sends cfg.Calls with analytics-go (github.com/segmentio/analytics-go/v3, in this process) and
// returns once the client has reported every call delivered or failed, then closes it. It waits for the reports
// before closing because analytics-go drops a batch that is waiting for a retry when the client is closed.
// analytics-go always makes 10 attempts per batch (its own constant), so MaxRetries is ignored; retryWait,
// when positive, replaces its backoff between them (tests use a few milliseconds). The error wraps
// ErrUndelivered when the client reported undelivered calls.
func RunGoClient(ctx context.Context, cfg ClientConfig, retryWait time.Duration) (ClientResult, error) {
	if err := cfg.validate(); err != nil {
		return ClientResult{}, err
	}
	cb := &goCallback{done: make(chan struct{}), want: len(cfg.Calls)}
	conf := analytics.Config{Endpoint: strings.TrimSuffix(cfg.BaseURL, "/"), Interval: 50 * time.Millisecond,
		BatchSize: cfg.FlushAt, Callback: cb, Logger: goDiscardLogger{}}
	if retryWait > 0 {
		conf.RetryAfter = func(int) time.Duration { return retryWait }
	}
	client, err := analytics.NewWithConfig(cfg.WriteKey, conf)
	if err != nil {
		return ClientResult{}, fmt.Errorf("configuring analytics-go: %w", err)
	}
	for _, c := range cfg.Calls {
		m, err := goMessage(c)
		if err != nil {
			_ = client.Close()
			return ClientResult{}, err
		}
		if err := client.Enqueue(m); err != nil {
			_ = client.Close()
			return ClientResult{}, fmt.Errorf("analytics-go refused a %s call: %w", c.Type, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	select {
	case <-cb.done:
	case <-ctx.Done():
		_ = client.Close()
		return cb.result(), fmt.Errorf("analytics-go did not report every call: %w", ctx.Err())
	}
	err = client.Close()
	res := cb.result()
	if err != nil {
		return res, fmt.Errorf("closing analytics-go: %w", err)
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("analytics-go: %w: %d failed: %s", ErrUndelivered, res.Failed, strings.Join(res.Errors, "; "))
	}
	return res, nil
}

func goMessage(c Call) (analytics.Message, error) {
	var ts time.Time
	if c.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, c.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("call timestamp %q: %w", c.Timestamp, err)
		}
		ts = t
	}
	props := analytics.Properties(c.Properties)
	traits := analytics.Traits(c.Traits)
	switch c.Type {
	case "identify":
		return analytics.Identify{UserId: c.UserID, AnonymousId: c.AnonymousID, Traits: traits, MessageId: c.MessageID, Timestamp: ts}, nil
	case "track":
		return analytics.Track{UserId: c.UserID, AnonymousId: c.AnonymousID, Event: c.Event, Properties: props, MessageId: c.MessageID, Timestamp: ts}, nil
	case "page":
		if c.Category != "" {
			props = props.Set("category", c.Category)
		}
		return analytics.Page{UserId: c.UserID, AnonymousId: c.AnonymousID, Name: c.Name, Properties: props, MessageId: c.MessageID, Timestamp: ts}, nil
	case "screen":
		if c.Category != "" {
			props = props.Set("category", c.Category)
		}
		return analytics.Screen{UserId: c.UserID, AnonymousId: c.AnonymousID, Name: c.Name, Properties: props, MessageId: c.MessageID, Timestamp: ts}, nil
	case "group":
		return analytics.Group{UserId: c.UserID, AnonymousId: c.AnonymousID, GroupId: c.GroupID, Traits: traits, MessageId: c.MessageID, Timestamp: ts}, nil
	case "alias":
		return analytics.Alias{UserId: c.UserID, PreviousId: c.PreviousID, MessageId: c.MessageID, Timestamp: ts}, nil
	}
	return nil, errors.New("unknown call type " + c.Type)
}

// goCallback counts what analytics-go reports per message.
type goCallback struct {
	mu   sync.Mutex
	res  ClientResult
	want int
	done chan struct{} // closed once want calls were reported
}

func (g *goCallback) Success(analytics.Message) { g.report(nil) }

func (g *goCallback) Failure(_ analytics.Message, err error) { g.report(err) }

func (g *goCallback) report(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.res.Failed++
		g.res.Errors = append(g.res.Errors, err.Error())
	} else {
		g.res.Sent++
	}
	if g.res.Sent+g.res.Failed == g.want {
		close(g.done)
	}
}

func (g *goCallback) result() ClientResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.res
	r.Errors = append([]string(nil), r.Errors...)
	return r
}

type goDiscardLogger struct{}

func (goDiscardLogger) Logf(string, ...any)   {}
func (goDiscardLogger) Errorf(string, ...any) {}
