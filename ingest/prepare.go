package ingest

import (
	"errors"
	"net/http"

	"github.com/signalstage/signalstage/schemas/contract"
)

// prepare splits the body, validates every event, derives its contract fields and encodes its record. A single
// event that is invalid (too large included) fails the request with 400; in a batch, invalid events are listed and
// dead-lettered while the valid ones go through. b is the request memory reserved so far; prepare reserves
// what the records need (503 when that does not fit now, 413 when it never can).
//
// A body that is an array of events (the Webhooks destination's batches) is read in one pass: the splitter hands
// each event, canonicalized, to the checks as it reaches it (contract.Body.Each), and the memory is reserved as
// the records grow. A batch ({"batch":[...]}, whose envelope may follow its events) is split first, then its
// events are read with the envelope merged in, after an upfront reservation.
func (s *Server) prepare(st *reqState, rq *request, b *budget) *httpError {
	st.preps, st.scratch, st.rejected = st.preps[:0], st.scratch[:0], st.rejected[:0]
	if want := 2 * len(st.body); cap(st.slab) < want {
		st.slab = make([]byte, 0, want)
	}
	st.slab = st.slab[:0]
	st.p.MaxEvents = s.cfg.MaxEventsPerRequest
	st.p.Deriver, st.p.Each = nil, nil
	array := isArray(st.body)
	if array && rq.key == nil {
		return errAuth // an array has no writeKey: the /v1 API needs Basic auth for it
	}
	if array {
		st.p.Deriver = &st.deriver
		st.p.Each = func(i int, e *contract.Span, scanErr error) error {
			// Returned as error only when set: a nil *httpError in an error is not a nil error.
			if herr := s.prepareOne(st, rq, i, e, true, scanErr); herr != nil {
				return herr
			}
			if herr := s.grow(st, b); herr != nil {
				return herr
			}
			return nil
		}
	}
	if err := contract.SplitBody(st.body, &st.p); err != nil {
		var herr *httpError
		switch {
		case errors.As(err, &herr):
			return herr
		case errors.Is(err, contract.ErrTooManyEvents):
			return fail(http.StatusRequestEntityTooLarge, "%s", err.Error())
		}
		return fail(http.StatusBadRequest, "%s", err.Error())
	}
	if len(st.p.Events) == 0 {
		return fail(http.StatusBadRequest, "no events in the request")
	}
	if st.p.Each != nil {
		return nil
	}
	if rq.key == nil {
		// The /v1 API without Basic auth: the key is the body's writeKey (analytics.js). The events are read
		// only once it is known (their routing keys carry its tenant).
		k, herr := s.keyFromBody(st, rq)
		if herr != nil {
			return herr
		}
		rq.key = k
	}
	// The body, the encoded records (each payload with its derived fields: canonical properties and traits,
	// ids, context) and merged payloads: about three times the body, plus the batch envelope twice per event.
	env := st.p.Envelope
	envSize := int64(len(env.Context) + len(env.SentAt) + len(env.Integrations))
	need := 3*int64(len(st.body)) + int64(len(st.p.Events))*(2*envSize+400)
	if need > b.limit {
		return fail(http.StatusRequestEntityTooLarge,
			"request too large once the batch context is merged into each of its %d events", len(st.p.Events))
	}
	if herr := b.growTo(need); herr != nil {
		return herr
	}
	rq.rewrite.Context, rq.rewrite.SentAt, rq.rewrite.Integrations = env.Context, env.SentAt, env.Integrations
	for i := range st.p.Events {
		if herr := s.prepareOne(st, rq, i, &st.p.Events[i], false, nil); herr != nil {
			return herr
		}
	}
	return nil
}

// prepareOne checks event i (scanned: already read by the splitter, with scanErr) and records its outcome.
func (s *Server) prepareOne(st *reqState, rq *request, i int, e *contract.Span, scanned bool, scanErr error) *httpError {
	p := check(st, e, rq, scanned, scanErr)
	if p.reason != "" {
		if !st.p.Multi {
			// 400 also for an event over -max-event-bytes: 413 is kept for a request over the request limit.
			return fail(http.StatusBadRequest, "%s", p.reason)
		}
		st.rejected = append(st.rejected, rejection{index: i, reason: p.reason})
	}
	st.preps = append(st.preps, p)
	st.counts[b2i(p.segment)][p.kind][b2i(p.reason != "")]++
	return nil
}

// growStep is the smallest extra reservation grow takes, so a batch does not reserve once per event.
const growStep = 16 << 10

// grow reserves the request memory its records have taken beyond what is held: 503 when it does not fit now,
// 413 when the request could never fit.
func (s *Server) grow(st *reqState, b *budget) *httpError {
	used := int64(len(st.body) + len(st.slab) + len(st.scratch) + 64*len(st.preps))
	if used <= b.held {
		return nil
	}
	limit := b.limit
	if used > limit {
		return fail(http.StatusRequestEntityTooLarge, "request too large: its records need more than -max-request-memory-per-key")
	}
	return b.growTo(min(max(used, b.held+growStep), limit))
}

// isArray reports whether the body is a JSON array (its first non-space byte).
func isArray(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c == '['
	}
	return false
}
