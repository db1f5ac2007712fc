package ingest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// TopicUsage is the compacted topic where each replica publishes its accepted-event count per key and month
// (key tenant|keyID|YYYY-MM|replica, value the decimal count). Every replica reads it whole and adds the other
// replicas' latest counts to its own, so a monthly limit holds across replicas without any other store.
const TopicUsage = "ingest.usage"

// usageRetention drops the counts of past months: the current month's records are at most 31 days old.
const usageRetention = 40 * 24 * time.Hour

// usageKey is one key's month.
type usageKey struct{ tenant, keyID, month string }

// usage enforces monthly limits per key. Only keys with a limit are counted.
type usage struct {
	log     *slog.Logger
	cl      *kgo.Client // the edge's producer
	topic   string
	replica string
	m       *metrics

	mu     sync.Mutex
	local  map[usageKey]int64            // this replica's counts
	dirty  map[usageKey]bool             // changed since the last publication
	others map[usageKey]map[string]int64 // other replicas' latest counts
	sum    map[usageKey]int64            // sum of others, per key
}

func newUsage(log *slog.Logger, cl *kgo.Client, topic, replica string, m *metrics) *usage {
	return &usage{log: log, cl: cl, topic: topic, replica: replica, m: m,
		local: map[usageKey]int64{}, dirty: map[usageKey]bool{},
		others: map[usageKey]map[string]int64{}, sum: map[usageKey]int64{}}
}

func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// nextMonth is the start of the UTC month after t, when limits reset.
func nextMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// check answers 429 (with Retry-After and X-RateLimit-* headers) when the key has used its month.
func (u *usage) check(k *Key, now time.Time, h http.Header) *httpError {
	if k.MonthlyLimit == 0 {
		return nil
	}
	uk := usageKey{k.Tenant, k.ID, monthOf(now)}
	u.mu.Lock()
	used := u.local[uk] + u.sum[uk]
	u.mu.Unlock()
	if used < k.MonthlyLimit {
		return nil
	}
	reset := nextMonth(now)
	h.Set("X-RateLimit-Limit", strconv.FormatInt(k.MonthlyLimit, 10))
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	return &httpError{code: http.StatusTooManyRequests, retryAfter: retryAfterValue(reset.Sub(now)),
		msg: fmt.Sprintf("monthly limit of %d events reached; it resets at %s", k.MonthlyLimit, reset.Format(time.RFC3339))}
}

// add counts n accepted events.
func (u *usage) add(k *Key, now time.Time, n int64) {
	if k.MonthlyLimit == 0 || n == 0 {
		return
	}
	uk := usageKey{k.Tenant, k.ID, monthOf(now)}
	u.mu.Lock()
	u.local[uk] += n
	u.dirty[uk] = true
	u.mu.Unlock()
}

func (u *usage) recordKey(uk usageKey, replica string) []byte {
	return []byte(uk.tenant + "|" + uk.keyID + "|" + uk.month + "|" + replica)
}

// publish sends the counts that changed. A failed send marks them dirty again.
func (u *usage) publish(ctx context.Context) {
	u.mu.Lock()
	if len(u.dirty) == 0 {
		u.mu.Unlock()
		return
	}
	recs := make([]*kgo.Record, 0, len(u.dirty))
	for uk := range u.dirty {
		recs = append(recs, &kgo.Record{Topic: u.topic, Key: u.recordKey(uk, u.replica),
			Value: strconv.AppendInt(nil, u.local[uk], 10)})
	}
	clear(u.dirty)
	u.mu.Unlock()
	for _, r := range recs {
		u.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				u.m.usagePublish.WithLabelValues("error").Inc()
				u.log.Warn("publishing usage", "err", err)
				if uk, replica, ok := parseUsageKey(r.Key); ok && replica == u.replica {
					u.mu.Lock()
					u.dirty[uk] = true
					u.mu.Unlock()
				}
				return
			}
			u.m.usagePublish.WithLabelValues("ok").Inc()
		})
	}
}

func parseUsageKey(k []byte) (usageKey, string, bool) {
	parts := bytes.Split(k, []byte(schemas.KeySep))
	if len(parts) != 4 {
		return usageKey{}, "", false
	}
	return usageKey{string(parts[0]), string(parts[1]), string(parts[2])}, string(parts[3]), true
}

// apply takes one record of the usage topic. This replica's own record restores its count after a restart.
func (u *usage) apply(r *kgo.Record) {
	uk, replica, ok := parseUsageKey(r.Key)
	if !ok {
		return
	}
	n, err := strconv.ParseInt(string(r.Value), 10, 64)
	if err != nil && r.Value != nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if replica == u.replica {
		u.local[uk] = max(u.local[uk], n)
		return
	}
	per := u.others[uk]
	if per == nil {
		per = map[string]int64{}
		u.others[uk] = per
	}
	u.sum[uk] += n - per[replica]
	per[replica] = n
}

// ensureUsageTopic creates the usage topic (compacted, one partition: it is small and read whole).
func ensureUsageTopic(ctx context.Context, adm *kadm.Client, name string, rf int16) error {
	return schemas.EnsureTopics(ctx, adm, rf, schemas.TopicSpec{Name: name, Partitions: 1, Configs: map[string]string{
		"cleanup.policy": "compact,delete",
		"retention.ms":   strconv.FormatInt(usageRetention.Milliseconds(), 10),
	}})
}

// run reads the usage topic from the start and publishes this replica's counts every interval until ctx ends,
// then publishes once more. caughtUp is closed once the topic has been read up to its end at start, so that a
// restarted replica serves with its previous count.
func (u *usage) run(ctx context.Context, brokers []string, interval time.Duration, caughtUp chan<- struct{}) error {
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(u.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return fmt.Errorf("usage consumer: %w", err)
	}
	defer cons.Close()
	ends, err := kadm.NewClient(cons).ListEndOffsets(ctx, u.topic)
	if err != nil {
		return fmt.Errorf("usage topic end offsets: %w", err)
	}
	end := int64(0)
	ends.Each(func(o kadm.ListedOffset) { end = max(end, o.Offset) })
	next := int64(0)
	if end == 0 {
		close(caughtUp)
		caughtUp = nil
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				u.publish(ctx)
			}
		}
	}()
	for {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) { u.log.Warn("reading usage topic", "err", err) })
		fs.EachRecord(func(r *kgo.Record) {
			u.apply(r)
			next = r.Offset + 1
		})
		if caughtUp != nil && next >= end {
			close(caughtUp)
			caughtUp = nil
		}
	}
}
