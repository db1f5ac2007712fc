package processor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// erasureLog is every erasure request of signals.erasures (one partition, compacted, never tombstoned), read
// from the start by every instance with a plain consumer outside the group, and followed while the processor
// runs. It is kept in memory (one request per erased person: their tenant, email and ids, about 150 bytes), so
// a restart reads the topic again rather than restoring it from Pebble: the topic is the durable copy, and it
// holds exactly what is still to be applied to a partition whose state was rebuilt. It is the core's ErasedSet
// (the suppression list) and the list each partition applies in order (applyErasures).
type erasureLog struct {
	topic  string
	client []kgo.Opt // seed brokers and the Kafka security options
	log    *slog.Logger
	reg    *schemas.Registry // reads registry-framed requests (nil: none)

	mu    sync.RWMutex
	list  []erasureAt // by offset
	set   map[[3]string]struct{}
	ready chan struct{}
	once  sync.Once
}

type erasureAt struct {
	offset int64
	e      schemas.Erasure
}

func newErasureLog(topic string, client []kgo.Opt, log *slog.Logger) *erasureLog {
	return &erasureLog{topic: topic, client: client, log: log, set: map[[3]string]struct{}{}, ready: make(chan struct{})}
}

// IsErased implements ErasedSet.
func (l *erasureLog) IsErased(tenant, kind, id string) bool {
	l.mu.RLock()
	_, ok := l.set[[3]string{tenant, kind, id}]
	l.mu.RUnlock()
	return ok
}

// since returns the requests after offset, in order.
func (l *erasureLog) since(offset int64) []erasureAt {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i := sort.Search(len(l.list), func(i int) bool { return l.list[i].offset > offset })
	return l.list[i:len(l.list):len(l.list)]
}

func (l *erasureLog) add(offset int64, e schemas.Erasure) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, erasureAt{offset, e})
	for kind, id := range map[string]string{ErasedKindEmail: e.Email, schemas.IDKindAnonymous: e.AnonymousID, schemas.IDKindUser: e.UserID} {
		if kind == ErasedKindEmail {
			id = normalizeErasedEmail(id)
		}
		if id != "" {
			l.set[[3]string{e.Tenant, kind, id}] = struct{}{}
		}
	}
}

// run follows the topic until ctx is done (nil) or the client fails; ready is closed once the topic's content at
// start has been read.
func (l *erasureLog) run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(l.client,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{l.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("erasures: creating client: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, l.topic)
	if err != nil {
		return fmt.Errorf("erasures: listing end offsets of %s: %w", l.topic, err)
	}
	end := int64(0)
	if o, ok := ends.Lookup(l.topic, 0); ok {
		if o.Err != nil {
			return fmt.Errorf("erasures: end offset of %s: %w", l.topic, o.Err)
		}
		end = o.Offset
	}
	next, idle := int64(0), 0
	for {
		if next >= end || (idle >= 2 && next >= end-1) { // end-1: a transaction's closing marker is no record
			l.once.Do(func() { close(l.ready) })
		}
		pollCtx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		var fetchErr error
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				l.log.Warn("fetching erasures", "topic", l.topic, "err", err)
				fetchErr = err
			}
		})
		if errors.Is(fetchErr, kgo.ErrClientClosed) {
			return fmt.Errorf("erasures: %w", fetchErr)
		}
		idle++
		fs.EachRecord(func(r *kgo.Record) {
			idle, next = 0, r.Offset+1
			if r.Value == nil {
				return // the contract has none; nothing to undo an erasure with
			}
			var e schemas.Erasure
			if err := schemas.Erasures.DecodeWith(l.reg, r.Value, &e); err != nil {
				l.log.Error("undecodable erasure request skipped", "topic", l.topic, "offset", r.Offset, "err", err)
				return
			}
			l.add(r.Offset, e)
		})
	}
}

// startErasures starts following signals.erasures, makes it the core's suppression list and waits until the
// requests that existed at start are read (nothing is processed before: an erased person's event must not slip
// through a restart). The returned wait stops with the processor and gives the follower's error.
func (p *Processor) startErasures(ctx context.Context, cancel context.CancelCauseFunc) (wait func() error) {
	l := newErasureLog(p.cfg.Topics.Name(schemas.TopicErasures), p.cfg.kafkaOpts(), p.log.With("component", "erasures"))
	l.reg = p.reg
	p.erasures, p.core.cfg.Erased = l, l
	done := make(chan error, 1)
	go func() {
		err := l.run(ctx)
		if err != nil {
			cancel(err)
		}
		done <- err
	}()
	wait = func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("erasures: %w", err)
		}
		return nil
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-l.ready:
			return wait
		case <-tick.C:
			p.log.Warn("waiting for the erasure requests before processing", "topic", l.topic)
		case <-ctx.Done():
			return wait
		}
	}
}

// erasuresAppliedKey holds the offset of signals.erasures up to which the partition's state applied the requests.
var erasuresAppliedKey = stateKey(prefixMeta, "", "erasures-applied")

// applyErasures applies to the partition, in the batch's transaction, the requests it has not applied yet (all of
// them for a state rebuilt from nothing), before the batch's records: their identities and holds are dropped
// and tombstoned, their ids marked, and the offset reached recorded. A partition applies requests when it next
// has records to process.
func (p *Processor) applyErasures(ov *overlay, em *emitter, part int32) error {
	if p.erasures == nil {
		return nil
	}
	applied := int64(-1)
	if b, err := ov.Get(erasuresAppliedKey); err != nil {
		return err
	} else if b != nil {
		r := newValueReader(b)
		if applied = r.varint(); r.err != nil {
			return fmt.Errorf("erasures applied: %w", r.err)
		}
	}
	pending := p.erasures.since(applied)
	p.core.SetErasedState(applied >= 0 || len(pending) > 0)
	if len(pending) == 0 {
		return nil
	}
	em.part = part
	for _, a := range pending {
		ov.begin()
		n := p.core.Stats.ErasedIDs
		if err := p.core.Erase(ov, em, &a.e); err != nil {
			return fmt.Errorf("applying the erasure at offset %d: %w", a.offset, err)
		}
		em.keep()
		p.log.Info("erased a person", "partition", part, "tenant", a.e.Tenant, "request_id", a.e.RequestID,
			"ids", p.core.Stats.ErasedIDs-n)
	}
	ov.Set(erasuresAppliedKey, binary.AppendVarint([]byte{valueFormat}, pending[len(pending)-1].offset))
	return nil
}
