package ingest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// pending counts a request's records until Kafka has answered for each. Promises run on the producer's promise
// goroutine (or inline when a record fails before buffering), so the counter is atomic.
type pending struct {
	n      atomic.Int64
	failed atomic.Bool
	done   chan struct{} // closed when every record has its answer
	fail   chan struct{} // closed at the first error: the request answers 503 without waiting for the rest
	mu     sync.Mutex
	err    error
}

func (p *pending) finish(_ *kgo.Record, err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
			close(p.fail)
		}
		p.mu.Unlock()
		p.failed.Store(true)
	}
	p.sub(1)
}

func (p *pending) firstErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// finished reports whether every record has its answer, so the request's memory may be reused.
func (p *pending) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *pending) sub(n int64) {
	if n > 0 && p.n.Add(-n) == 0 {
		close(p.done)
	}
}

// produce encodes the request's events (accepted ones to signals.raw, rejected ones to signals.dlq), sends them,
// and waits until Kafka acknowledged every one. Any failure, a full producer buffer, or the timeout is a 503:
// the client retries, and the processor's dedup absorbs whatever part of the request did reach Kafka.
func (s *Server) produce(_ context.Context, st *reqState, rq *request) (int, *httpError) {
	k, received := rq.key, rq.received
	if cap(st.recs) < len(st.preps) {
		st.recs = make([]kgo.Record, len(st.preps))
	}
	recs := st.recs[:len(st.preps)]
	accepted := 0
	for i := range st.preps {
		p := &st.preps[i]
		if p.kind == kindInvalid {
			e := &st.p.Events[i]
			key := deadKey(k.Tenant, e)
			recs[i] = kgo.Record{Topic: s.dlqTopic, Key: key, Value: s.deadLetter(k, e.Raw, p.reason, key, received)}
			continue
		}
		accepted++
		recs[i] = kgo.Record{Topic: s.rawTopic, Key: st.slab[p.keyOff:p.valOff], Value: st.slab[p.valOff:p.end]}
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProduceTimeout)
	defer cancel()
	pend := &pending{done: make(chan struct{}), fail: make(chan struct{})}
	pend.n.Store(int64(len(recs)))
	start := time.Now()
	sent := 0
	finish := pend.finish // one closure per request, not per record
	for i := range recs {
		if pend.failed.Load() {
			break // a full buffer fails fast; do not queue the rest of a request that will get 503
		}
		s.prod.TryProduce(ctx, &recs[i], finish)
		sent++
	}
	pend.sub(int64(len(recs) - sent))
	select {
	case <-pend.done:
	case <-pend.fail:
	case <-ctx.Done():
		s.log.Warn("produce timed out", "key_id", k.ID, "records", len(recs), "timeout", s.cfg.ProduceTimeout)
		return 0, s.unavailable("timed out waiting for Kafka to acknowledge the events")
	}
	if err := pend.firstErr(); err != nil {
		// Records of this request still in the producer keep st's memory: only a finished request is pooled.
		if pend.finished() {
			st.release()
		}
		if errors.Is(err, kgo.ErrMaxBuffered) {
			s.log.Debug("producer buffer full", "key_id", k.ID)
			return 0, s.unavailable("overloaded, retry later")
		}
		s.log.Warn("produce failed", "key_id", k.ID, "err", err)
		return 0, s.unavailable("could not store the events, retry later")
	}
	s.m.produce.Observe(time.Since(start).Seconds())
	return accepted, nil
}

// unavailable is a 503 with Retry-After: Segment retries it.
func (s *Server) unavailable(msg string) *httpError {
	return &httpError{code: http.StatusServiceUnavailable, msg: msg, retryAfter: retryAfterValue(s.cfg.RetryAfter)}
}

// deadLetter encodes the DLQ record of a rejected event. Rejections are rare, so the reflective codec is fine.
func (s *Server) deadLetter(k *Key, raw []byte, reason string, key []byte, at time.Time) []byte {
	dl := schemas.DeadLetter{Tenant: k.Tenant, Stage: "ingest", Reason: reason, Partition: -1, Offset: -1,
		Key: key, Payload: raw, FailedAt: at}
	b, err := schemas.DeadLetters.EncodeWith(s.reg, &dl)
	if err != nil {
		// Cannot happen for these field types; keep the event rather than lose it.
		s.log.Error("encoding dead letter", "err", err)
		return append([]byte(nil), raw...)
	}
	return b
}

func retryAfterValue(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}
