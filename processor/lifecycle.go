package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shutdownGrace is how long a batch under way when Run's context ends may still take to commit; then its
// transaction is aborted. Either way no transaction is left open for the next owner to wait on.
const shutdownGrace = 15 * time.Second

// Backoff between two sessions after a Kafka failure (a broker outage): capped, exponential, reset once a
// session processed a batch.
const (
	sessionBackoffMin = 500 * time.Millisecond
	sessionBackoffMax = 15 * time.Second
	// maxFenced is how many sessions in a row may be fenced (another producer took the transactional id) before
	// the processor gives up: one fence is what a transaction the broker timed out during an outage looks like;
	// several in a row mean another live instance has the same -transactional-id.
	maxFenced = 3
)

// runSessions runs group transact sessions until ctx ends or a failure a new session cannot cure. A Kafka
// failure (a broker unreachable, a transaction that could not end) closes the session, which aborts what it had
// open and leaves the group, and after a backoff a new session rejoins; every store catches up from the
// changelog before its next use, since the failed transaction may or may not have committed. Meanwhile /readyz
// says not ready.
func (p *Processor) runSessions(ctx context.Context) error {
	backoff, fenced := sessionBackoffMin, 0
	for {
		progressed, err := p.runSession(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			return nil // the client was closed under us; nothing to retry
		}
		if !retriable(err) {
			return err
		}
		if progressed {
			backoff, fenced = sessionBackoffMin, 0
		}
		if isFenced(err) {
			if fenced++; fenced >= maxFenced {
				return fmt.Errorf("fenced %d times in a row: is -transactional-id %s used by another instance? %w",
					fenced, p.cfg.TransactionalID, err)
			}
		}
		p.m.sessionRestarts.Inc()
		p.log.Warn("kafka session failed; rejoining after a backoff", "err", err, "backoff", backoff.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, sessionBackoffMax)
	}
}

// runSession runs one group transact session: it polls and processes until ctx ends (nil) or a batch fails.
// progressed reports whether a batch ended (committed, or aborted by a rebalance).
func (p *Processor) runSession(ctx context.Context) (progressed bool, err error) {
	// A batch under way when ctx ends still commits: its context ends shutdownGrace later.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopWork := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownGrace, cancelWork) })
	defer stopWork()

	sess, err := kgo.NewGroupTransactSession(p.clientOpts()...)
	if err != nil {
		return false, fmt.Errorf("%w: creating transactional session: %w", ErrConfig, err)
	}
	p.ownMu.Lock()
	p.joined, p.restored = false, false
	p.ownMu.Unlock()
	p.inSession.Store(true)
	defer func() {
		p.inSession.Store(false)
		// A transaction left open (the batch failed, or shutdown cut it off) is aborted now rather than by its
		// timeout, which would hold the changelog's last stable offset back for the next owner of its partitions.
		actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, aerr := sess.End(actx, kgo.TryAbort); aerr != nil && err == nil {
			p.log.Warn("aborting the open transaction", "err", aerr)
		}
		cancel()
		start := time.Now()
		sess.Close() // leaves the group (unless static: -instance-id), so the partitions move at once
		p.log.Info("left group", "took", time.Since(start).String(), "static", p.cfg.InstanceID != "")
		p.invalidateAll()
	}()
	p.log.Info("processing", "group", p.cfg.Group, "transactional_id", p.cfg.TransactionalID,
		"instance_id", p.cfg.InstanceID, "input", p.raw)
	for {
		if err := p.restoreAssigned(ctx); err != nil && !errors.Is(err, errRevoked) {
			if ctx.Err() != nil {
				return progressed, nil
			}
			return progressed, err
		}
		// A bounded poll, so an idle instance still restores what it was assigned (and becomes ready).
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fetches := sess.PollRecords(pctx, p.cfg.MaxPollRecords)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return progressed, nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		if err := p.batch(work, sess, fetches); err != nil {
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return progressed, nil // a restore ended by the stop
			}
			if errors.Is(err, errRevoked) {
				continue // nothing begun; the rebalance rewinds to the committed offsets
			}
			return progressed, err
		}
		progressed = true
	}
}

// restoreAssigned opens and catches up the store of every assigned partition not restored since it was
// assigned, then records that the assignment it saw is restored (unless it changed meanwhile).
func (p *Processor) restoreAssigned(ctx context.Context) error {
	p.ownMu.Lock()
	gen, done := p.assignGen, p.restored
	parts := make([]int32, 0, len(p.assigned))
	for part := range p.assigned {
		parts = append(parts, part)
	}
	p.ownMu.Unlock()
	if done {
		return nil
	}
	for _, part := range parts {
		if _, err := p.store(ctx, part); err != nil {
			return err
		}
	}
	p.ownMu.Lock()
	if p.assignGen == gen && p.joined {
		p.restored = true
	}
	p.ownMu.Unlock()
	return nil
}

// invalidateAll makes every store catch up from the changelog before its next use and forgets the assignment:
// the session that ended may have committed a transaction whose End failed.
func (p *Processor) invalidateAll() {
	p.ownMu.Lock()
	defer p.ownMu.Unlock()
	for part := range p.stores {
		p.epochs[part]++
	}
	clear(p.assigned)
	p.joined, p.restored = false, false
	p.assignGen++
}

// stopOr returns a context that ends with ctx or with Run's (a graceful stop), whichever comes first.
func (p *Processor) stopOr(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if p.stop == nil {
		return ctx, cancel
	}
	stop := context.AfterFunc(p.stop, cancel)
	return ctx, func() { stop(); cancel() }
}

// retriable reports whether a new session may cure err: anything from Kafka is (a broker down, a transaction
// the broker timed out, a coordinator moving); the state store's failures and configuration errors are not.
func retriable(err error) bool {
	return !errors.Is(err, ErrStateIO) && !errors.Is(err, ErrConfig)
}

func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}
