package ingest

import (
	"net/http"
	"sync"
	"sync/atomic"
)

// keyQuota is one key's share of the edge: its requests in flight and the request memory they hold. Without
// it one key could take every in-flight slot and the whole -max-request-memory (issue 14: 500 idle sockets
// announcing 512 KB bodies), and every other tenant would get 503.
type keyQuota struct {
	inFlight atomic.Int64
	mem      atomic.Int64
}

// quotas holds a keyQuota per key id, kept across registry reloads (a reload must not reset what a key holds).
// Requests whose key is only in the body (analytics.js's writeKey) share the quota of the id "".
type quotas struct {
	m    sync.Map // key id → *keyQuota
	anon atomic.Pointer[keyQuota]
}

// anonymous is the quota of requests whose key is not known before the body.
func (q *quotas) anonymous() *keyQuota {
	if a := q.anon.Load(); a != nil {
		return a
	}
	q.anon.CompareAndSwap(nil, q.of(""))
	return q.anon.Load()
}

func (q *quotas) of(id string) *keyQuota {
	if v, ok := q.m.Load(id); ok {
		return v.(*keyQuota)
	}
	v, _ := q.m.LoadOrStore(id, new(keyQuota))
	return v.(*keyQuota)
}

// budget is the request memory one request holds, reserved from its key's quota and the edge's budget.
type budget struct {
	s     *Server
	q     *keyQuota
	limit int64 // the key's memory quota
	held  int64
}

// keyLimits are the in-flight and memory quotas of k (nil: a key not known before the body).
func (s *Server) keyLimits(k *Key) (inFlight, memory int64) {
	inFlight, memory = int64(s.cfg.MaxInFlightPerKey), s.cfg.MaxRequestMemoryPerKey
	if k != nil && k.MaxInFlight > 0 {
		inFlight = min(int64(k.MaxInFlight), int64(s.cfg.MaxInFlight))
	}
	if k != nil && k.MaxRequestMemory > 0 {
		memory = min(k.MaxRequestMemory, s.cfg.MaxRequestMemory)
	}
	return inFlight, memory
}

// growTo makes the request hold n bytes (nothing when it holds that much already): 503 when that does not fit
// now, 413 when it never can (over the per-key quota, the smaller bound).
func (b *budget) growTo(n int64) *httpError {
	extra := n - b.held
	if extra <= 0 {
		return nil
	}
	if n > b.limit {
		return fail(http.StatusRequestEntityTooLarge, "request too large: it needs more than the key's request memory (-max-request-memory-per-key)")
	}
	if b.q.mem.Add(extra) > b.limit {
		b.q.mem.Add(-extra)
		b.s.m.quotaRejected.WithLabelValues("memory").Inc()
		return b.s.unavailable("this key has too much request data in flight, retry later")
	}
	if !b.s.reserve(extra) {
		b.q.mem.Add(-extra)
		return b.s.unavailable("too much request data in flight, retry later")
	}
	b.held = n
	return nil
}

// release returns what the request holds.
func (b *budget) release() {
	if b.held > 0 {
		b.q.mem.Add(-b.held)
		b.s.memUsed.Add(-b.held)
		b.held = 0
	}
}
