package ingest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"hash/fnv"

	"github.com/signalstage/signalstage/schemas"
)

// Segment call types, in the order of the metric label table.
var segmentTypes = [...]string{"track", "identify", "page", "screen", "group", "alias"}

// Event kinds for metrics: the Segment types, then generic webhook signals, then invalid events.
const (
	kindWebhook = len(segmentTypes)
	kindInvalid = kindWebhook + 1
	numKinds    = kindInvalid + 1
)

func kindName(k int) string {
	switch {
	case k < len(segmentTypes):
		return segmentTypes[k]
	case k == kindWebhook:
		return "webhook"
	default:
		return "invalid"
	}
}

const typeReason = "type must be one of track, identify, page, screen, group, alias"

// prep is an event ready to encode: its payload is either a span of the body or scratch[off:end] when the edge
// rewrote it (batch context merge, implied type).
type prep struct {
	payload  []byte
	off, end int
	id       []byte // routing id (after the tenant)
	segment  bool
	kind     int
	reason   string // why the event was rejected (kind == kindInvalid)
}

// check validates e and prepares its record. reason is empty when the event is accepted; tooLarge marks the
// size rejection (413 for a single event). Rewritten payloads are appended to *scratch.
func check(e *event, rt *route, batchCtx []byte, maxEvent int, scratch *[]byte) (p prep, reason string, tooLarge bool) {
	p, reason, tooLarge = checkEvent(e, rt, batchCtx, maxEvent, scratch)
	if reason != "" {
		p.kind, p.reason = kindInvalid, reason
	}
	return p, reason, tooLarge
}

func checkEvent(e *event, rt *route, batchCtx []byte, maxEvent int, scratch *[]byte) (p prep, reason string, tooLarge bool) {
	p.kind, p.off = kindInvalid, -1
	if !e.isObject {
		return p, "event is not a JSON object", false
	}
	if len(e.raw) > maxEvent {
		return p, fmt.Sprintf("event is %d bytes, more than the limit of %d", len(e.raw), maxEvent), true
	}
	anon, ok := idValue(e.anon)
	if !ok {
		return p, "anonymousId must be a string", false
	}
	user, ok := idValue(e.user)
	if !ok {
		return p, "userId must be a string", false
	}
	msg, ok := idValue(e.msg)
	if !ok {
		return p, "messageId must be a string", false
	}
	p.segment = rt.segmentOnly || e.typ != nil || e.anon != nil || e.msg != nil
	inject := false
	if p.segment {
		if e.typ == nil && rt.impliedType != "" {
			inject = true
			p.kind = typeKind(rt.impliedType)
		} else {
			t, ok := idValue(e.typ)
			if !ok || len(e.typ) == 0 || e.typ[0] != '"' {
				return p, typeReason, false
			}
			p.kind = typeKind(string(t))
			if p.kind == kindInvalid {
				return p, typeReason, false
			}
			if rt.impliedType != "" && string(t) != rt.impliedType {
				p.kind = kindInvalid
				return p, fmt.Sprintf("type %q does not match the endpoint /v1/%s", t, rt.impliedType), false
			}
		}
		if len(anon) == 0 && len(user) == 0 {
			p.kind = kindInvalid
			return p, "userId or anonymousId is required", false
		}
	} else {
		p.kind = kindWebhook
	}
	switch {
	case len(anon) > 0:
		p.id = anon
	case len(user) > 0:
		p.id = user
	case len(msg) > 0:
		p.id = msg
	default:
		p.id = contentHash(e.raw)
	}
	p.payload = e.raw
	if inject || len(batchCtx) > 0 {
		// The merged event must fit the event limit too; the bound is checked before writing anything.
		if n := len(e.raw) + len(batchCtx) + len(`"context":,"type":"identify",`); n > maxEvent && len(batchCtx) > 0 {
			if merged := mergedSize(e, rt.impliedType, inject, batchCtx); merged > maxEvent {
				return p, fmt.Sprintf("event with the batch context merged is %d bytes, more than the limit of %d", merged, maxEvent), true
			}
		}
		p.off = len(*scratch)
		*scratch = rewrite(*scratch, e, rt.impliedType, inject, batchCtx)
		p.end = len(*scratch)
		p.payload = nil
	}
	return p, "", false
}

func typeKind(t string) int {
	for i, s := range segmentTypes {
		if t == s {
			return i
		}
	}
	return kindInvalid
}

// contentHash is the routing id of an event without any id: retries of the same bytes land on the same partition.
func contentHash(raw []byte) []byte {
	h := fnv.New64a()
	h.Write(raw)
	var sum [8]byte
	return hex.AppendEncode(nil, h.Sum(sum[:0]))
}

// rewrite appends to dst the event with "type" added (when inject) and the batch context merged into its
// context. Segment's rule: the batch context fills in what the event's own context does not set.
func rewrite(dst []byte, e *event, typ string, inject bool, batchCtx []byte) []byte {
	raw := e.raw
	dst = append(dst, '{')
	added := false // members written before the event's own
	if inject {
		dst = append(append(append(dst, `"type":"`...), typ...), '"')
		added = true
	}
	ctxStart, ctxEnd := -1, -1
	if len(batchCtx) > 0 {
		if e.ctx != nil {
			ctxStart = indexSpan(raw, e.ctx)
			ctxEnd = ctxStart + len(e.ctx)
		} else {
			if added {
				dst = append(dst, ',')
			}
			dst = append(append(dst, `"context":`...), batchCtx...)
			added = true
		}
	}
	if added && raw[skipWS(raw, 1)] != '}' {
		dst = append(dst, ',')
	}
	if ctxStart < 0 {
		return append(dst, raw[1:]...)
	}
	dst = append(dst, raw[1:ctxStart]...)
	dst = mergeContext(dst, raw[ctxStart:ctxEnd], batchCtx)
	return append(dst, raw[ctxEnd:]...)
}

// mergedSize is the exact size rewrite would produce, for the rare events near the limit.
func mergedSize(e *event, typ string, inject bool, batchCtx []byte) int {
	return len(rewrite(nil, e, typ, inject, batchCtx))
}

// indexSpan returns the offset of sub inside s. sub must be a sub-slice of s (the scanner only makes two-index
// sub-slices of the body), so both end at the same backing array end and their capacities give the offset.
func indexSpan(s, sub []byte) int { return cap(s) - cap(sub) }

// mergeContext appends the event's context with the batch context's members it lacks. A context that is not an
// object (null, say) is replaced by the batch context. Both are validated objects; contexts have a handful of
// members, so the quadratic key lookup is cheaper than building a set.
func mergeContext(dst, evCtx, batchCtx []byte) []byte {
	if evCtx[0] != '{' {
		return append(dst, batchCtx...)
	}
	// The event context without its closing brace, then the missing members.
	end := bytes.LastIndexByte(evCtx, '}')
	dst = append(dst, evCtx[:end]...)
	_, _, _, nonEmpty := nextMember(evCtx, 1)
	for key, val, i, ok := nextMember(batchCtx, 1); ok; key, val, i, ok = nextMember(batchCtx, i) {
		if hasMember(evCtx, key) {
			continue
		}
		if nonEmpty {
			dst = append(dst, ',')
		}
		nonEmpty = true
		dst = append(append(append(append(dst, '"'), key...), `":`...), val...)
	}
	return append(dst, '}')
}

// nextMember returns the member of the validated object b that starts at or after i (just past '{' or a
// previous member), and the index to continue from. ok is false at the end of the object.
func nextMember(b []byte, i int) (key, val []byte, next int, ok bool) {
	i = skipWS(b, i)
	if i < len(b) && b[i] == ',' {
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		return nil, nil, i, false
	}
	kend, _, err := scanString(b, i)
	if err != nil {
		return nil, nil, i, false
	}
	key = b[i+1 : kend-1]
	i = skipWS(b, skipWS(b, kend)+1) // past ':'
	vend, err := scanValue(b, i, 1)
	if err != nil {
		return nil, nil, i, false
	}
	return key, b[i:vend], vend, true
}

// hasMember reports whether the validated object b has a member with this raw key.
func hasMember(b, key []byte) bool {
	for k, _, i, ok := nextMember(b, 1); ok; k, _, i, ok = nextMember(b, i) {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// routingKey is schemas.RoutingKey appended to dst without converting the id to a string.
func routingKey(dst []byte, tenant string, id []byte) []byte {
	dst = append(dst, tenant...)
	dst = append(dst, schemas.KeySep...)
	return append(dst, id...)
}
