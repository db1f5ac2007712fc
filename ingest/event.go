package ingest

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"time"

	"github.com/signalstage/signalstage/schemas"
	"github.com/signalstage/signalstage/schemas/contract"
)

// Event kinds for metrics: the Segment types, then generic webhook signals, then invalid events.
const (
	kindWebhook = len(contract.SegmentTypes)
	kindInvalid = kindWebhook + 1
	numKinds    = kindInvalid + 1
)

func kindName(k int) string {
	switch {
	case k < len(contract.SegmentTypes):
		return contract.SegmentTypes[k]
	case k == kindWebhook:
		return "webhook"
	default:
		return "invalid"
	}
}

// prep is one event of a request after the checks: an accepted event's record is encoded in the request's slab
// at [keyOff, valOff) (key) and [valOff, end) (value); a rejected one keeps the reason.
type prep struct {
	keyOff, valOff, end int
	segment             bool
	kind                int
	reason              string // why the event was rejected (kind == kindInvalid)
}

// request is what every event of one request shares.
type request struct {
	rt        *route
	key       *Key
	received  time.Time
	requestID string
	rewrite   contract.Rewrite // the batch envelope's context and sentAt, the /v1 path's type
	maxEvent  int
	hdr       http.Header // the request's headers
	respHdr   http.Header // the answer's headers (429 adds its own)
	sig       [sha1.Size]byte
	rawHeader []byte // the framing of raw events: Registry.Header(RawEvents), nil for single-object
}

// check validates e, derives its contract fields and, when it is accepted, appends its record (key and value) to
// st.slab. scanned says the splitter already read e with st.deriver (scanErr its outcome). reason is empty when
// the event is accepted. Rewritten payloads are built in st.scratch.
func check(st *reqState, e *contract.Span, rq *request, scanned bool, scanErr error) prep {
	p := checkEvent(st, e, rq, scanned, scanErr)
	if p.reason != "" {
		p.kind = kindInvalid
	}
	return p
}

func checkEvent(st *reqState, e *contract.Span, rq *request, scanned bool, scanErr error) (p prep) {
	p.kind = kindInvalid
	if !e.IsObject {
		p.reason = "event is not a JSON object"
		return p
	}
	if len(e.Raw) > rq.maxEvent {
		p.reason = fmt.Sprintf("event is %d bytes, more than the limit of %d", len(e.Raw), rq.maxEvent)
		return p
	}
	// One pass validates the event, canonicalizes it and finds its members (the splitter's, or this one).
	d := &st.deriver
	sp := *e
	if !scanned {
		sp, scanErr = d.Scan(e.Raw, false)
	}
	if scanErr != nil {
		p.reason = reasonOf(scanErr)
		return p
	}
	rt := rq.rt
	p.segment = rt.segmentOnly || sp.Type != nil || sp.AnonymousID != nil || sp.MessageID != nil
	rw := rq.rewrite
	if p.segment && rt.impliedType != "" && sp.Type != nil {
		if t, ok := contract.IDText(sp.Type); ok && sp.Type[0] == '"' && string(t) != rt.impliedType {
			p.reason = fmt.Sprintf("type %q does not match the endpoint /v1/%s", t, rt.impliedType)
			return p
		}
	}
	if !p.segment {
		rw.Type = "" // a generic webhook signal has no Segment type to imply
	}
	payload := e.Raw
	if rw.Needed(&sp) {
		// The merged event must fit the event limit too; the bound is checked before writing anything.
		if n := rw.RewrittenSize(&sp); n > rq.maxEvent {
			if merged := rw.MergedSize(&sp); merged > rq.maxEvent {
				p.reason = fmt.Sprintf("event with the batch context merged is %d bytes, more than the limit of %d", merged, rq.maxEvent)
				return p
			}
		}
		off := len(st.scratch)
		st.scratch = contract.AppendEvent(st.scratch, &sp, &rw)
		payload = st.scratch[off:]
		if _, err := d.Scan(payload, false); err != nil {
			p.reason = reasonOf(err) // the batch's context made it invalid (a name both spell differently, say)
			return p
		}
	}
	source := schemas.SourceWebhook
	if p.segment {
		source = schemas.SourceSegment
	}
	ev := &st.ev
	*ev = schemas.RawEvent{Tenant: rq.key.Tenant, KeyID: rq.key.ID, Source: source, ReceivedAt: rq.received,
		RequestID: rq.requestID, Payload: payload}
	if err := d.Finish(contract.Input{Source: source, ReceivedAt: rq.received}, &ev.EventFields); err != nil {
		p.reason = reasonOf(err)
		return p
	}
	if p.segment {
		p.kind = typeKind(ev.Type)
	} else {
		p.kind = kindWebhook
	}
	p.keyOff = len(st.slab)
	st.slab = routingKey(st.slab, rq.key.Tenant, contract.RoutingID(&ev.EventFields))
	p.valOff = len(st.slab)
	if rq.rawHeader != nil {
		st.slab = schemas.AppendRawEventFramed(st.slab, rq.rawHeader, ev)
	} else {
		st.slab = schemas.AppendRawEvent(st.slab, ev)
	}
	p.end = len(st.slab)
	return p
}

// reasonOf is the client-facing reason of a Derive error, without the sentinel's prefix.
func reasonOf(err error) string {
	msg := err.Error()
	for _, prefix := range []error{contract.ErrInvalidEvent, contract.ErrNotObject} {
		if errors.Is(err, prefix) {
			if p := prefix.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
				return msg[len(p):]
			}
		}
	}
	return msg
}

func typeKind(t string) int {
	for i, s := range contract.SegmentTypes {
		if t == s {
			return i
		}
	}
	return kindInvalid
}

// deadKey is the key a rejected event would have had, from its ids as sent (it was not derived), so its dead
// letter lands next to its visitor's events: the first of anonymousId, userId, messageId that is not a
// placeholder, else an FNV-64a hash of its bytes; nil for an element that is not an object.
func deadKey(tenant string, e *contract.Span) []byte {
	if !e.IsObject {
		return nil
	}
	if e.AnonymousID == nil && e.UserID == nil && e.MessageID == nil {
		s := contract.Inspect(e.Raw) // an event of an array was only skipped by SplitBody
		e = &s
	}
	for _, v := range [...][]byte{e.AnonymousID, e.UserID, e.MessageID} {
		if id, ok := contract.IDText(v); ok && len(id) > 0 && !contract.IsPlaceholder(string(id)) {
			return routingKey(nil, tenant, id)
		}
	}
	h := fnv.New64a()
	h.Write(e.Raw)
	var sum [8]byte
	return routingKey(nil, tenant, hex.AppendEncode(nil, h.Sum(sum[:0])))
}

// routingKey is schemas.RoutingKey appended to dst without converting the id.
func routingKey[S string | []byte](dst []byte, tenant string, id S) []byte {
	dst = append(dst, tenant...)
	dst = append(dst, schemas.KeySep...)
	return append(dst, id...)
}
