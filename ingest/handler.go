package ingest

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
	basicAuth   bool   // key from HTTP Basic, else the body's writeKey (the /v1 API), instead of the path
	maxBytes    int64  // largest body (-max-request-bytes, the webhook route's -max-webhook-request-bytes)

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
		if origin := r.Header.Get("Origin"); origin != "" {
			// On every answer, errors included: without it the browser hides the status from analytics.js,
			// which then cannot tell a 429 or 503 (retry later) from a refusal.
			corsHeaders(w.Header(), origin)
		}
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

// serveEvents answers one request and returns the status code it sent. Everything the headers can decide (the
// key, its secret, its origin, the presence of a signature, a used-up plan) is decided before the body is read.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request, rt *route) int {
	received := s.cfg.Now()
	rq := request{rt: rt, received: received, requestID: s.requestID(r), maxEvent: s.cfg.MaxEventBytes, rawHeader: s.rawHeader,
		rewrite: contract.Rewrite{Type: rt.impliedType}, hdr: r.Header, respHdr: w.Header()}
	k, herr := s.authenticate(r, rt)
	if herr == nil && k != nil {
		herr = s.admit(k, &rq)
	}
	if herr != nil {
		return writeError(w, herr)
	}
	// The key's share of the edge; a key known only from the body shares the quota of "".
	q := s.quotas.anonymous()
	if k != nil {
		q = k.quota
	}
	maxIn, maxMem := s.keyLimits(k)
	if q.inFlight.Add(1) > maxIn {
		q.inFlight.Add(-1)
		s.m.quotaRejected.WithLabelValues("in_flight").Inc()
		return writeError(w, s.unavailable("this key has too many requests in flight, retry later"))
	}
	defer q.inFlight.Add(-1)
	b := budget{s: s, q: q, limit: maxMem}
	defer b.release()
	st := statePool.Get().(*reqState)
	st.body, herr = s.readBody(w, r, st.body[:0], rt.maxBytes, &b)
	if herr != nil {
		st.release()
		return writeError(w, herr)
	}
	rt.bytes.Observe(float64(len(st.body)))
	if k != nil && !s.checkSignature(k, st.body, &rq) {
		st.release()
		return writeError(w, errAuth)
	}
	rq.key = k
	if herr := s.prepare(st, &rq, &b); herr != nil {
		st.release()
		return writeError(w, herr)
	}
	k = rq.key
	// The plan limit is decided for the whole request before any of it is written: a request that would cross
	// it is refused whole, so Segment's retry of it is clean.
	n := int64(len(st.preps) - len(st.rejected))
	if herr := s.usage.reserve(k, received, n, w.Header()); herr != nil {
		s.m.limitRejected.WithLabelValues(k.Tenant).Inc()
		st.release()
		return writeError(w, herr)
	}
	accepted, herr := s.produce(r.Context(), st, &rq)
	if herr != nil {
		s.usage.settle(k, received, n, false)
		// st is not released: records of a timed-out request may still be in the producer.
		return writeError(w, herr)
	}
	s.usage.settle(k, received, n, true)
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

// authenticate finds the key of the request: the webhook path's, or the /v1 API's HTTP Basic user (Segment's
// write key, with or without the colon). A /v1 request without Basic auth returns a nil key and no error: its
// key is the body's writeKey (keyFromBody).
func (s *Server) authenticate(r *http.Request, rt *route) (*Key, *httpError) {
	var apiKey string
	if rt.basicAuth {
		user, ok := basicUser(r.Header.Get("Authorization"))
		if !ok {
			return nil, nil
		}
		apiKey = user
	} else {
		apiKey = mux.Vars(r)["apiKey"]
	}
	k := s.keys.lookup(apiKey)
	if k == nil || k.Revoked {
		return nil, errAuth
	}
	return k, nil
}

// admit checks what the headers say about the request of key k: its secret, endpoint type, route, origin, that
// a signed key's signature is there (the signature itself needs the body), and that the plan is not used up.
func (s *Server) admit(k *Key, rq *request) *httpError {
	if !k.checkSecret(rq.hdr.Get("X-Api-Secret")) {
		return errAuth
	}
	if k.EndpointType != EndpointSignalStaging {
		return fail(http.StatusForbidden, "this API key is not for the %s endpoint", EndpointSignalStaging)
	}
	if k.Public && !rq.rt.basicAuth {
		return fail(http.StatusForbidden, "a public (browser) key can only send, through the /v1 Tracking API")
	}
	if origin := rq.hdr.Get("Origin"); origin != "" && !k.allowsOrigin(origin) {
		return fail(http.StatusForbidden, "this API key does not accept requests from the origin %s", origin)
	}
	if k.SigningSecret != "" {
		sig := strings.TrimSpace(rq.hdr.Get("X-Signature"))
		if len(sig) != 2*len(rq.sig) {
			return errAuth
		}
		if _, err := hex.Decode(rq.sig[:], []byte(sig)); err != nil {
			return errAuth
		}
	}
	if herr := s.usage.check(k, rq.received, rq.respHdr); herr != nil {
		s.m.limitRejected.WithLabelValues(k.Tenant).Inc()
		return herr
	}
	return nil
}

// keyFromBody finds the key of a /v1 request without Basic auth: the writeKey member of its event or batch
// (analytics.js puts it there), and admits it.
func (s *Server) keyFromBody(st *reqState, rq *request) (*Key, *httpError) {
	wk, ok := contract.IDText(st.p.Envelope.WriteKey)
	if !ok || len(wk) == 0 {
		return nil, errAuth
	}
	k := s.keys.lookup(string(wk))
	if k == nil || k.Revoked {
		return nil, errAuth
	}
	if herr := s.admit(k, rq); herr != nil {
		return nil, herr
	}
	if !s.checkSignature(k, st.body, rq) {
		return nil, errAuth
	}
	return k, nil
}

// checkSignature reports whether the request's X-Signature (decoded by admit) is the Webhooks (Actions)
// destination's for body, under the key's signing secret; a key without one accepts any. The destination signs
// JSON.stringify of what it sends for a single event (the whole body) but, for a batch, JSON.stringify of the
// FIRST event only; JSON.stringify of an array is its elements' JSON.stringify joined by commas, so that is
// exactly the bytes of the body's first element. A batch whose signature covers only its first event is
// accepted (the destination offers nothing else): a key that must trust every event of a batch also requires
// X-Api-Secret (secret_hash), which the destination sends as a custom header.
func (s *Server) checkSignature(k *Key, body []byte, rq *request) bool {
	if k.SigningSecret == "" {
		return true
	}
	if isArray(body) {
		if first := firstElement(body); first != nil && k.signs(first, rq.sig[:]) {
			s.m.partialSignatures.Inc()
			return true
		}
	}
	return k.signs(body, rq.sig[:])
}

// firstElement returns the bytes of the first element of the array body, nil when it has none or is not valid
// up to there. Only the first element is read.
func firstElement(body []byte) []byte {
	b := contract.Body{MaxEvents: 1}
	err := contract.SplitBody(body, &b)
	if len(b.Events) == 0 || (err != nil && !errors.Is(err, contract.ErrTooManyEvents)) {
		return nil
	}
	return b.Events[0].Raw
}

// basicUser returns the user of an HTTP Basic Authorization header: Segment documents base64("key:") and
// its libraries send that, but base64("key") without the colon is accepted as the key too.
func basicUser(h string) (string, bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	enc := strings.TrimSpace(h[len(prefix):])
	var buf [256]byte
	if base64.StdEncoding.DecodedLen(len(enc)) > len(buf) {
		return "", false
	}
	n, err := base64.StdEncoding.Decode(buf[:], []byte(enc))
	if err != nil {
		if n, err = base64.RawStdEncoding.Decode(buf[:], []byte(strings.TrimRight(enc, "="))); err != nil {
			return "", false
		}
	}
	user, _, _ := strings.Cut(string(buf[:n]), ":")
	return user, user != ""
}

// corsHeaders are the answer's CORS headers for a request from origin (every answer of the event routes).
// Whether the key accepts the origin is decided per key (admit): these only let the browser read the answer.
func corsHeaders(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset")
}

// preflight answers a CORS preflight of the /v1 API. It carries no key, so it is allowed for any origin some
// key accepts (the request itself is then checked against its own key's allowed_origins).
func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || !s.keys.allowsOrigin(origin) {
		s.m.requests.WithLabelValues("v1_preflight", codeLabel(http.StatusForbidden)).Inc()
		w.WriteHeader(http.StatusForbidden)
		return
	}
	h := w.Header()
	corsHeaders(h, origin)
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "authorization, content-type, content-encoding, x-request-id")
	h.Set("Access-Control-Max-Age", "86400")
	s.m.requests.WithLabelValues("v1_preflight", codeLabel(http.StatusNoContent)).Inc()
	w.WriteHeader(http.StatusNoContent)
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
