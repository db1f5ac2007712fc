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

// tenantMonth is one tenant's month: the plan limit counts every key of the tenant.
type tenantMonth struct{ tenant, month string }

// usage enforces monthly limits: the tenant's plan (Tenant.MonthlyLimit, across all its keys) and a key's own
// cap (Key.MonthlyLimit). Every key of a tenant with a plan is counted, and a key with a cap.
type usage struct {
	log     *slog.Logger
	cl      *kgo.Client // the edge's producer
	topic   string
	replica string
	m       *metrics

	mu      sync.Mutex
	local   map[usageKey]int64            // this replica's counts (acknowledged by Kafka)
	pending map[usageKey]int64            // reserved by requests being produced, not yet acknowledged
	dirty   map[usageKey]bool             // changed since the last publication
	others  map[usageKey]map[string]int64 // other replicas' latest counts
	sum     map[usageKey]int64            // sum of others, per key
	// Per tenant: this replica's acknowledged and pending counts, and the other replicas' (all keys).
	tLocal, tPending, tOthers map[tenantMonth]int64
}

func newUsage(log *slog.Logger, cl *kgo.Client, topic, replica string, m *metrics) *usage {
	return &usage{log: log, cl: cl, topic: topic, replica: replica, m: m,
		local: map[usageKey]int64{}, pending: map[usageKey]int64{}, dirty: map[usageKey]bool{},
		others: map[usageKey]map[string]int64{}, sum: map[usageKey]int64{},
		tLocal: map[tenantMonth]int64{}, tPending: map[tenantMonth]int64{}, tOthers: map[tenantMonth]int64{}}
}

func monthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// nextMonth is the start of the UTC month after t, when limits reset.
func nextMonth(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
}

// check answers 429 (with Retry-After and X-RateLimit-* headers) when the tenant's plan or the key's cap is
// used up: the cheap answer before the body is read. reserve decides exactly once the events are counted.
func (u *usage) check(k *Key, now time.Time, h http.Header) *httpError {
	return u.decide(k, now, 0, h, false)
}

// reserve takes n events of the month for a request, or answers 429 when they would cross the tenant's plan or
// the key's cap: a request is accepted or refused whole. settle ends the reservation.
func (u *usage) reserve(k *Key, now time.Time, n int64, h http.Header) *httpError {
	return u.decide(k, now, n, h, true)
}

// counted reports whether k's events are counted: only those of a tenant with a plan or of a key with a cap,
// so that unlimited traffic pays no lock (a limit set mid-month counts from when it is set).
func counted(k *Key) bool { return k.plan.MonthlyLimit > 0 || k.MonthlyLimit > 0 }

func (u *usage) decide(k *Key, now time.Time, n int64, h http.Header, take bool) *httpError {
	if !counted(k) {
		return nil
	}
	uk := usageKey{k.Tenant, k.ID, monthOf(now)}
	tm := tenantMonth{k.Tenant, uk.month}
	u.mu.Lock()
	keyUsed := u.local[uk] + u.pending[uk] + u.sum[uk]
	tenantUsed := u.tLocal[tm] + u.tPending[tm] + u.tOthers[tm]
	var limit, used int64
	var who string
	switch {
	case k.plan.MonthlyLimit > 0 && (tenantUsed+n > k.plan.MonthlyLimit || (n == 0 && tenantUsed >= k.plan.MonthlyLimit)):
		limit, used, who = k.plan.MonthlyLimit, tenantUsed, "the plan's monthly limit"
	case k.MonthlyLimit > 0 && (keyUsed+n > k.MonthlyLimit || (n == 0 && keyUsed >= k.MonthlyLimit)):
		limit, used, who = k.MonthlyLimit, keyUsed, "this key's monthly limit"
	default:
		if take && n > 0 {
			u.pending[uk] += n
			u.tPending[tm] += n
		}
		u.mu.Unlock()
		return nil
	}
	u.mu.Unlock()
	reset := nextMonth(now)
	left := max(0, limit-used)
	h.Set("X-RateLimit-Limit", strconv.FormatInt(limit, 10))
	h.Set("X-RateLimit-Remaining", strconv.FormatInt(left, 10))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	msg := fmt.Sprintf("%s of %d events is reached; it resets at %s", who, limit, reset.Format(time.RFC3339))
	if left > 0 {
		msg = fmt.Sprintf("the request's %d events would cross %s of %d events (%d left); none of them was accepted; it resets at %s",
			n, who, limit, left, reset.Format(time.RFC3339))
	}
	return &httpError{code: http.StatusTooManyRequests, retryAfter: retryAfterValue(reset.Sub(now)), msg: msg}
}

// settle ends a reservation of n events: they count when Kafka acknowledged them (ok), else they are given back.
func (u *usage) settle(k *Key, now time.Time, n int64, ok bool) {
	if n == 0 || !counted(k) {
		return
	}
	uk := usageKey{k.Tenant, k.ID, monthOf(now)}
	tm := tenantMonth{k.Tenant, uk.month}
	u.mu.Lock()
	u.pending[uk] -= n
	u.tPending[tm] -= n
	if u.pending[uk] == 0 {
		delete(u.pending, uk)
	}
	if u.tPending[tm] == 0 {
		delete(u.tPending, tm)
	}
	if ok {
		u.local[uk] += n
		u.tLocal[tm] += n
		u.dirty[uk] = true
	}
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
	tm := tenantMonth{uk.tenant, uk.month}
	if replica == u.replica {
		if n > u.local[uk] {
			u.tLocal[tm] += n - u.local[uk]
			u.local[uk] = n
		}
		return
	}
	per := u.others[uk]
	if per == nil {
		per = map[string]int64{}
		u.others[uk] = per
	}
	u.sum[uk] += n - per[replica]
	u.tOthers[tm] += n - per[replica]
	per[replica] = n
}

// ensureUsageTopic creates the usage topic (compacted, one partition: it is small and read whole).
func ensureUsageTopic(ctx context.Context, log *slog.Logger, adm *kadm.Client, name string, rep schemas.Replication) error {
	res, err := schemas.EnsureTopics(ctx, adm, rep, schemas.TopicSpec{Name: name, Partitions: 1, Configs: map[string]string{
		"cleanup.policy": "compact,delete",
		"retention.ms":   strconv.FormatInt(usageRetention.Milliseconds(), 10),
	}})
	res.Log(log)
	return err
}

// run reads the usage topic from the start and publishes this replica's counts every interval until ctx ends,
// then publishes once more. caughtUp is closed once the topic has been read up to its end at start, so that a
// restarted replica serves with its previous count.
func (u *usage) run(ctx context.Context, conn []kgo.Opt, interval time.Duration, caughtUp chan<- struct{}) error {
	cons, err := kgo.NewClient(append(conn, kgo.ConsumeTopics(u.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
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
