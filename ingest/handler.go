package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// route is one event-accepting endpoint.
type route struct {
	name        string // metric label
	impliedType string // Segment type set by the /v1/<type> path
	segmentOnly bool   // every event is a Segment call (the /v1 API)
	basicAuth   bool   // key from HTTP Basic (the /v1 API) instead of the path

	// Metric children resolved once, so that the common answer costs no label lookup.
	ok    prometheus.Counter
	bytes prometheus.Observer
}

// rejection is one entry of the response's "rejected" list.
type rejection struct {
	index  int
	reason string
}

// reqState is the per-request working memory, pooled so that a steady stream of requests allocates little.
// A request that timed out is not returned to the pool: the producer may still hold its records.
type reqState struct {
	body     []byte
	p        contract.Body
	preps    []prep
	deriver  contract.Deriver
	ev       schemas.RawEvent // the event being encoded
	scratch  []byte
	slab     []byte
	recs     []kgo.Record
	rejected []rejection
	counts   [2][numKinds][2]int // [segment][kind][rejected]
	resp     []byte
}

var statePool = sync.Pool{New: func() any {
	st := new(reqState)
	st.deriver.Unsafe = true // each event's fields are encoded right after they are derived (check)
	return st
}}

// maxPooledBody keeps an occasional huge request from pinning memory in the pool.
const maxPooledBody = 1 << 20

func (st *reqState) release() {
	if cap(st.body) > maxPooledBody || cap(st.slab) > 4*maxPooledBody {
		return
	}
	clear(st.recs) // drop references to payloads before pooling
	st.ev = schemas.RawEvent{}
	st.counts = [2][numKinds][2]int{}
	statePool.Put(st)
}

// httpError is an answer other than 200; msg is shown to the client as {"error": msg}.
type httpError struct {
	code       int
	msg        string
	retryAfter string // Retry-After seconds, when set
}

func (e *httpError) Error() string { return e.msg }

func fail(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// errAuth is the one message for every authentication failure: it never tells whether the key exists.
var errAuth = &httpError{code: http.StatusUnauthorized, msg: "invalid API key, secret or signature"}

func (s *Server) handler(rt *route) http.HandlerFunc {
	rt.ok = s.m.requests.WithLabelValues(rt.name, codeLabel(http.StatusOK))
	rt.bytes = s.m.requestBytes.WithLabelValues(rt.name)
	return func(w http.ResponseWriter, r *http.Request) {
		var code int
		if s.inFlight.Add(1) > int64(s.cfg.MaxInFlight) {
			// Refusing before reading the body keeps memory bounded however many clients connect.
			code = writeError(w, s.unavailable("too many requests in flight, retry later"))
		} else {
			s.m.inFlight.Inc()
			code = s.serveEvents(w, r, rt)
			s.m.inFlight.Dec()
		}
		s.inFlight.Add(-1)
		if code == http.StatusOK {
			rt.ok.Inc()
		} else {
			s.m.requests.WithLabelValues(rt.name, codeLabel(code)).Inc()
		}
	}
}

// serveEvents answers one request and returns the status code it sent.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, rt *route) int {
	received := s.cfg.Now()
	k, herr := s.authenticate(r, rt)
	if herr != nil {
		return writeError(w, herr)
	}
	if herr := s.usage.check(k, received, w.Header()); herr != nil {
		s.m.limitRejected.WithLabelValues(k.Tenant).Inc()
		return writeError(w, herr)
	}
	// Reserve the body's memory before reading it (its declared size, else the limit), the rest after parsing.
	held := int64(s.cfg.MaxRequestBytes)
	if r.ContentLength >= 0 && r.ContentLength < held && r.Header.Get("Content-Encoding") == "" {
		held = r.ContentLength
	}
	if !s.reserve(held) {
		return writeError(w, s.unavailable("too much request data in flight, retry later"))
	}
	defer func() { s.memUsed.Add(-held) }()
	st := statePool.Get().(*reqState)
	var err error
	st.body, err = s.readBody(w, r, st.body[:0])
	if err != nil {
		st.release()
		return writeError(w, asHTTPError(err))
	}
	rt.bytes.Observe(float64(len(st.body)))
	if !k.checkSignature(st.body, r.Header.Get("X-Signature")) {
		st.release()
		return writeError(w, errAuth)
	}
	rq := request{rt: rt, key: k, received: received, requestID: s.requestID(r), maxEvent: s.cfg.MaxEventBytes,
		rewrite: contract.Rewrite{Type: rt.impliedType}}
	if herr := s.prepare(st, &rq, &held); herr != nil {
		st.release()
		return writeError(w, herr)
	}
	accepted, herr := s.produce(r.Context(), st, &rq)
	if herr != nil {
		// st is not released: records of a timed-out request may still be in the producer.
		return writeError(w, herr)
	}
	s.usage.add(k, received, int64(accepted))
	s.countEvents(k.Tenant, st)
	st.resp = appendResponse(st.resp[:0], accepted, st.rejected)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(st.resp)
	st.release()
	return http.StatusOK
}

// reserve takes n bytes of the request memory budget, or reports that they are not available.
func (s *Server) reserve(n int64) bool {
	if s.memUsed.Add(n) > s.cfg.MaxRequestMemory {
		s.memUsed.Add(-n)
		return false
	}
	return true
}

// authenticate finds the key of the request and checks its secret and endpoint type.
func (s *Server) authenticate(r *http.Request, rt *route) (*Key, *httpError) {
	var apiKey string
	if rt.basicAuth {
		user, _, ok := r.BasicAuth()
		if !ok {
			return nil, errAuth
		}
		apiKey = user
	} else {
		apiKey = mux.Vars(r)["apiKey"]
	}
	k := s.keys.lookup(apiKey)
	if k == nil || k.Revoked || !k.checkSecret(r.Header.Get("X-Api-Secret")) {
		return nil, errAuth
	}
	if k.EndpointType != EndpointSignalStaging {
		return nil, fail(http.StatusForbidden, "this API key is not for the %s endpoint", EndpointSignalStaging)
	}
	return k, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// requestID is the caller's X-Request-Id when it sent one, else a process-unique id.
func (s *Server) requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		return id
	}
	return s.idPrefix + strconv.FormatUint(s.reqSeq.Add(1), 36)
}

// countEvents adds the request's per-kind counts to the events metric, one label lookup per non-zero cell.
func (s *Server) countEvents(tenant string, st *reqState) {
	for seg := range 2 {
		source := schemas.SourceWebhook
		if seg == 1 {
			source = schemas.SourceSegment
		}
		for kind := range numKinds {
			for rej := range 2 {
				if n := st.counts[seg][kind][rej]; n > 0 {
					outcome := "accepted"
					if rej == 1 {
						outcome = "rejected"
					}
					s.m.events.WithLabelValues(tenant, source, kindName(kind), outcome).Add(float64(n))
				}
			}
		}
	}
}

// appendResponse writes {"accepted":N,"rejected":[{"index":i,"reason":"..."}]}.
func appendResponse(dst []byte, accepted int, rejected []rejection) []byte {
	dst = append(dst, `{"accepted":`...)
	dst = strconv.AppendInt(dst, int64(accepted), 10)
	dst = append(dst, `,"rejected":[`...)
	for i, r := range rejected {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(r.index), 10)
		dst = append(dst, `,"reason":`...)
		dst = appendJSONString(dst, r.reason)
		dst = append(dst, '}')
	}
	return append(dst, "]}\n"...)
}

// appendJSONString quotes s for JSON (reasons may quote a client's type value).
func appendJSONString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

func writeError(w http.ResponseWriter, e *httpError) int {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.retryAfter != "" {
		h.Set("Retry-After", e.retryAfter)
	}
	w.WriteHeader(e.code)
	b := append([]byte(`{"error":`), appendJSONString(nil, e.msg)...)
	_, _ = w.Write(append(b, "}\n"...))
	return e.code
}

func asHTTPError(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	return fail(http.StatusBadRequest, "%s", err.Error())
}

func codeLabel(code int) string {
	switch code {
	case 200:
		return "200"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 413:
		return "413"
	case 429:
		return "429"
	case 503:
		return "503"
	}
	return strconv.Itoa(code)
}
