package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// batch processes one poll as one transaction: outputs, changelog and offsets commit together, and the state
// buffered in overlays reaches Pebble only if the transaction committed. On abort kgo rewinds to the committed
// offsets and the overlays are dropped, so state and offsets never disagree.
func (p *Processor) batch(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches) error {
	type input struct{ raw, links, aliases []*kgo.Record }
	inputs := map[int32]*input{}
	fetches.EachRecord(func(r *kgo.Record) {
		in := inputs[r.Partition]
		if in == nil {
			in = &input{}
			inputs[r.Partition] = in
		}
		switch r.Topic {
		case p.idents:
			in.links = append(in.links, r)
		case p.aliases:
			in.aliases = append(in.aliases, r)
		default:
			in.raw = append(in.raw, r)
		}
	})
	p.closeIdle()
	parts := make([]int32, 0, len(inputs))
	for part := range inputs {
		parts = append(parts, part)
	}
	slices.Sort(parts)
	// Restore before producing anything: a restore reads up to the changelog's last stable offset, which our own
	// open transaction would hold back.
	stores := make(map[int32]*storeState, len(parts))
	for _, part := range parts {
		s, err := p.store(ctx, part)
		if err != nil {
			return err
		}
		stores[part] = s
	}

	if err := sess.Begin(); err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	em := &emitter{p: p, sess: sess, ctx: ctx, clogOffsets: map[int32]int64{}}
	overlays := make(map[int32]*overlay, len(parts))
	sweeps := make(map[int32]sweepState, len(parts))
	defer func() {
		for _, ov := range overlays {
			ov.close()
		}
	}()
	p.core.Stats = Stats{}
	now := p.cfg.Now()
	var nRaw, nLinks int
	for _, part := range parts {
		ov := newOverlay(stores[part].partStore)
		overlays[part] = ov
		legacy, err := p.legacyLookups(part, stores[part], ov, now)
		if err != nil {
			return p.abort(ctx, sess, err)
		}
		p.core.SetLegacyLookups(legacy)
		if err := p.applyErasures(ov, em, part); err != nil {
			return p.abort(ctx, sess, err)
		}
		in := inputs[part]
		for _, r := range in.links {
			if err := p.applyLink(ov, em, r); err != nil {
				return p.abort(ctx, sess, err)
			}
		}
		for _, r := range in.aliases {
			if err := p.applyAlias(ov, em, r); err != nil {
				return p.abort(ctx, sess, err)
			}
		}
		for _, r := range in.raw {
			if err := p.processRaw(ov, em, r); err != nil {
				return p.abort(ctx, sess, err)
			}
		}
		next, err := sweep(p.core, stores[part], ov, now, sweepBudget(p.cfg.SweepKeys, ov), p.cfg.SweepInterval, p.log)
		if err != nil {
			return p.abort(ctx, sess, err)
		}
		sweeps[part] = next
		for _, m := range ov.mutations() {
			em.changelog(part, m)
		}
		nRaw += len(in.raw)
		nLinks += len(in.links) + len(in.aliases)
		p.m.addCacheLookups(stores[part].visitors)
		p.m.addFilterLookups(stores[part].filter)
	}
	if err := em.err(); err != nil {
		return p.abort(ctx, sess, err)
	}

	// Flush and look at every produce before committing: the client fails records it never sent (a partition
	// without a leader past the delivery timeout) without failing the transaction, and End would commit the input
	// offsets without them (TestClusterOutputWithoutLeader).
	start := time.Now()
	if err := sess.Client().Flush(ctx); err != nil {
		return p.abort(ctx, sess, fmt.Errorf("flushing the transaction's records: %w", err))
	}
	if err := em.err(); err != nil {
		return p.abort(ctx, sess, err)
	}
	committed, err := sess.End(ctx, kgo.TryCommit)
	p.m.txnSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		p.m.transactions.WithLabelValues("aborted").Inc()
		return fmt.Errorf("ending transaction: %w", err)
	}
	if err := em.err(); err != nil && committed {
		// Cannot happen (every produce finished before End), but never apply state then.
		return fmt.Errorf("produce failed in a committed transaction: %w", err)
	}
	if !committed {
		p.m.transactions.WithLabelValues("aborted").Inc()
		p.log.Info("transaction aborted (rebalance); batch will be read again", "records", nRaw+nLinks)
		return nil
	}
	p.m.transactions.WithLabelValues("committed").Inc()
	for _, part := range parts {
		stores[part].sweep = sweeps[part]
		cp, ok := em.clogOffsets[part]
		if !ok {
			continue // nothing changed
		}
		overlays[part].close() // before writing: an open iterator pins the memtables it reads
		if err := stores[part].applyRecords(overlays[part].mutations(), cp); err != nil {
			return err
		}
	}
	p.m.records.WithLabelValues("raw").Add(float64(nRaw))
	p.m.records.WithLabelValues("identities").Add(float64(nLinks))
	p.m.batchRecords.Observe(float64(nRaw + nLinks))
	p.m.deadLetters.Add(float64(em.deadLetters))
	p.m.addStats(p.core.Stats)
	inWindow := 0
	for _, s := range p.stores {
		if s.legacyUntilMs > now.UnixMilli() {
			inWindow++
		}
	}
	p.m.legacyWindow.Set(float64(inWindow))
	p.m.setFilterBytes(p.stores)
	return nil
}

// abort ends the transaction with an abort after a processing failure and returns cause.
func (p *Processor) abort(ctx context.Context, sess *kgo.GroupTransactSession, cause error) error {
	if _, err := sess.End(ctx, kgo.TryAbort); err != nil {
		return errors.Join(cause, fmt.Errorf("aborting transaction: %w", err))
	}
	p.m.transactions.WithLabelValues("aborted").Inc()
	return cause
}

// record runs fn for one input record as a unit: its state writes and outputs are kept only if fn succeeds. Any
// failure other than the state store's own (ErrStateIO, which stops the processor) dead-letters the record, so a
// record that cannot be processed never stops its partition, and leaves no half-applied state or outputs behind.
func (p *Processor) record(ov *overlay, em *emitter, r *kgo.Record, tenant string, fn func() error) error {
	ov.begin()
	stats := p.core.Stats
	em.part = r.Partition
	err := fn()
	switch {
	case err == nil:
		if err = unproducible(ov, em); err == nil {
			em.keep()
			return nil
		}
	case errors.Is(err, ErrStateIO):
		return err
	}
	ov.rollback()
	em.discard()
	p.core.Stats = stats
	em.deadLetter(r, err.Error(), tenant)
	return nil
}

func (p *Processor) processRaw(ov *overlay, em *emitter, r *kgo.Record) error {
	var raw schemas.RawEvent
	if err := schemas.DecodeRawEventWith(p.reg, r.Value, &raw); err != nil {
		em.deadLetter(r, "decoding RawEvent: "+err.Error(), "")
		return nil
	}
	return p.record(ov, em, r, raw.Tenant, func() error {
		return p.core.ProcessEvent(ov, em, r.Partition, r.Offset, r.Key, &raw)
	})
}

func (p *Processor) applyLink(ov *overlay, em *emitter, r *kgo.Record) error {
	if r.Value == nil {
		return nil // tombstone: an erasure's (applied by every partition from signals.erasures), nothing to do here
	}
	var l schemas.IdentityLink
	if err := schemas.IdentityLinks.DecodeWith(p.reg, r.Value, &l); err != nil {
		em.deadLetter(r, "decoding IdentityLink: "+err.Error(), "")
		return nil
	}
	return p.record(ov, em, r, l.Tenant, func() error { return p.core.ApplyLink(ov, em, &l) })
}

func (p *Processor) applyAlias(ov *overlay, em *emitter, r *kgo.Record) error {
	if r.Value == nil {
		return nil
	}
	tenant, user, anon, ok := decodeAliasRecord(r.Value)
	if !ok {
		em.deadLetter(r, "decoding alias record", "")
		return nil
	}
	return p.record(ov, em, r, tenant, func() error { return p.core.ApplyAlias(ov, em, tenant, user, anon) })
}

// Alias sends an (anonymousId, userId) pair to the partition that owns the userId.
func (e *emitter) Alias(tenant, userID, anonymousID string) {
	rk := schemas.RoutingKey(tenant, userID)
	key := append(append(rk, 0), anonymousID...)
	v := appendBytes([]byte{valueFormat}, []byte(tenant))
	v = appendBytes(v, []byte(userID))
	v = appendBytes(v, []byte(anonymousID))
	e.out(&kgo.Record{Topic: e.p.aliases, Partition: partitionOfKey(rk, e.p.cfg.Topics.Partitions), Key: key, Value: v})
}

func decodeAliasRecord(b []byte) (tenant, user, anon string, ok bool) {
	r := newValueReader(b)
	tenant, user, anon = string(r.bytes()), string(r.bytes()), string(r.bytes())
	return tenant, user, anon, r.err == nil
}

// emitter produces the core's outputs into the session's transaction.
type emitter struct {
	p           *Processor
	sess        *kgo.GroupTransactSession
	ctx         context.Context
	mu          sync.Mutex
	firstErr    error
	clogOffsets map[int32]int64 // highest changelog offset produced per partition (under mu)
	deadLetters int
	pending     []*kgo.Record // outputs of the record being processed, produced once it succeeded
	pendingDead int           // dead letters among pending
	part        int32         // input partition of the record being processed
}

func (e *emitter) out(r *kgo.Record) { e.pending = append(e.pending, r) }

// keep produces the outputs of the record just processed.
func (e *emitter) keep() {
	for _, r := range e.pending {
		e.sess.Produce(e.ctx, r, e.promise)
	}
	clear(e.pending)
	e.pending = e.pending[:0]
	e.deadLetters += e.pendingDead
	e.pendingDead = 0
}

// discard drops the outputs of a record whose processing failed.
func (e *emitter) discard() {
	clear(e.pending)
	e.pending = e.pending[:0]
	e.pendingDead = 0
}

// DeadHeld dead-letters, with the record being processed, a held record of the partition that rehydration cannot
// read (the core deletes it, so it is dead-lettered once). Its origin is the changelog (state key and value),
// which `sink redrive` does not send back.
func (e *emitter) DeadHeld(tenant string, key, value []byte, reason string) {
	if b, ok := e.encodeDeadLetter(&schemas.DeadLetter{Tenant: tenant, Stage: "processor", Reason: reason, Topic: e.p.clog,
		Partition: e.part, Offset: -1, Key: key, Payload: value, FailedAt: e.p.cfg.Now().UTC()}); ok {
		e.out(&kgo.Record{Topic: e.p.dlq, Key: key, Value: b})
		e.pendingDead++
	}
}

func (e *emitter) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.firstErr == nil {
		e.firstErr = err
	}
}

func (e *emitter) err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.firstErr
}

func (e *emitter) promise(r *kgo.Record, err error) {
	if err != nil {
		e.fail(fmt.Errorf("producing to %s: %w", r.Topic, err))
	}
}

func (e *emitter) Signal(key []byte, _ *schemas.Signal, enc []byte) {
	e.out(&kgo.Record{Topic: e.p.resolve, Key: key, Value: enc})
}

// reg is the processor's schema registry (nil: none, and in tests that build an emitter without a processor).
func (e *emitter) reg() *schemas.Registry {
	if e.p == nil {
		return nil
	}
	return e.p.reg
}

func (e *emitter) Link(l *schemas.IdentityLink) {
	b, err := schemas.IdentityLinks.EncodeWith(e.reg(), l)
	if err != nil {
		e.fail(fmt.Errorf("encoding identity link: %w", err))
		return
	}
	e.out(&kgo.Record{Topic: e.p.idents, Key: schemas.RoutingKey(l.Tenant, l.ID), Value: b})
}

// Tombstone deletes the link of tenant|id from the compacted identities topic (an erased person's).
func (e *emitter) Tombstone(tenant, id string) {
	e.out(&kgo.Record{Topic: e.p.idents, Key: schemas.RoutingKey(tenant, id)})
}

// Erasure publishes an erasure request (the email linked to a request's ids) to signals.erasures.
func (e *emitter) Erasure(x *schemas.Erasure) {
	b, err := schemas.Erasures.EncodeWith(e.reg(), x)
	if err != nil {
		e.fail(fmt.Errorf("encoding erasure: %w", err))
		return
	}
	e.out(&kgo.Record{Topic: e.p.cfg.Topics.Name(schemas.TopicErasures), Key: schemas.ErasureKey(x), Value: b})
}

func (e *emitter) changelog(part int32, m kv) {
	r := &kgo.Record{Topic: e.p.clog, Partition: part, Key: m.key}
	if !m.del {
		r.Value = m.val
	}
	e.sess.Produce(e.ctx, r, func(r *kgo.Record, err error) {
		if err != nil {
			e.fail(fmt.Errorf("producing changelog: %w", err))
			return
		}
		e.mu.Lock()
		if cur, ok := e.clogOffsets[r.Partition]; !ok || r.Offset > cur {
			e.clogOffsets[r.Partition] = r.Offset
		}
		e.mu.Unlock()
	})
}

func (e *emitter) deadLetter(r *kgo.Record, reason, tenant string) {
	if tenant == "" {
		tenant, _, _ = schemas.SplitKey(r.Key)
	}
	d := &schemas.DeadLetter{Tenant: tenant, Stage: "processor", Reason: reason, Topic: r.Topic,
		Partition: r.Partition, Offset: r.Offset, Key: r.Key, Payload: r.Value, Retries: schemas.Redrives(r),
		FailedAt: e.p.cfg.Now().UTC()}
	if d.Key == nil {
		d.Key = []byte{}
	}
	b, ok := e.encodeDeadLetter(d)
	if !ok {
		return
	}
	e.deadLetters++
	e.p.log.Warn("dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", reason)
	e.sess.Produce(e.ctx, &kgo.Record{Topic: e.p.dlq, Key: r.Key, Value: b}, e.promise)
}

// encodeDeadLetter encodes d, cutting its payload so that the dead letter itself can be produced (a record
// dead-lettered for its size would otherwise fail the batch again); the reason says so.
func (e *emitter) encodeDeadLetter(d *schemas.DeadLetter) ([]byte, bool) {
	if d.Key == nil {
		d.Key = []byte{}
	}
	if d.Payload == nil {
		d.Payload = []byte{}
	}
	b, err := schemas.DeadLetters.EncodeWith(e.reg(), d)
	if err == nil && recordBytes(d.Key, b) > maxRecordBytes {
		full := len(d.Payload)
		d.Reason += fmt.Sprintf(" (payload cut from %d bytes to fit the producer's limit)", full)
		d.Payload = d.Payload[:max(0, full-(recordBytes(d.Key, b)-maxRecordBytes)-256)]
		b, err = schemas.DeadLetters.EncodeWith(e.reg(), d)
	}
	if err != nil {
		e.fail(fmt.Errorf("encoding dead letter: %w", err))
		return nil, false
	}
	return b, true
}
