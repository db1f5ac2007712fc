package contract

import "bytes"

// The edge stores each event byte for byte, except for three rewrites that make the stored event what Segment
// itself would store, so that every reader derives the same fields from the payload alone:
//   - a /v1/<type> path implies the type: "type" is added to an event that lacks it;
//   - a batch's context fills in the members the event's own context lacks (Segment's rule: the event wins; an
//     event without a context, or with one that is not an object, gets the batch's);
//   - a batch's sentAt is added to an event that lacks one (Segment's libraries send sentAt on the batch, and the
//     clock-skew correction needs it per event; sentAt is a transport member, so the signal id is unchanged).

// Rewrite says what AppendEvent adds to an event.
type Rewrite struct {
	Type    string // added as "type" when the event has none ("" adds nothing)
	Context []byte // a batch's context object (nil: none)
	SentAt  []byte // a batch's sentAt string (nil: none)
	// Integrations is a batch's integrations object (nil: none), merged as Context is: the event's own members
	// win. Segment's libraries do not send it on the batch today; the Tracking API documents it there.
	Integrations []byte
}

// Needed reports whether AppendEvent would change e.
func (r *Rewrite) Needed(e *Span) bool {
	return (r.Type != "" && e.Type == nil) || len(r.Context) > 0 || (len(r.SentAt) > 0 && e.SentAt == nil) ||
		len(r.Integrations) > 0
}

// AppendEvent appends to dst the event e (an object of a body SplitBody validated) with r's rewrites applied.
func AppendEvent(dst []byte, e *Span, r *Rewrite) []byte {
	raw := e.Raw
	dst = append(dst, '{')
	added := false // members written before the event's own
	add := func(name string, val []byte) {
		if added {
			dst = append(dst, ',')
		}
		dst = append(append(append(append(dst, '"'), name...), `":`...), val...)
		added = true
	}
	if r.Type != "" && e.Type == nil {
		add("type", append(append([]byte{'"'}, r.Type...), '"'))
	}
	if len(r.SentAt) > 0 && e.SentAt == nil {
		add("sentAt", r.SentAt)
	}
	// The event's own context and integrations are merged in place: splices of raw, in order.
	type splice struct {
		start, end int
		batch      []byte
	}
	var splices [2]splice
	n := 0
	if len(r.Context) > 0 {
		if e.Context != nil {
			start := indexSpan(raw, e.Context)
			splices[n] = splice{start, start + len(e.Context), r.Context}
			n++
		} else {
			add("context", r.Context)
		}
	}
	if len(r.Integrations) > 0 {
		if v, start := rootMember(raw, "integrations"); v != nil {
			splices[n] = splice{start, start + len(v), r.Integrations}
			n++
		} else {
			add("integrations", r.Integrations)
		}
	}
	if added && raw[skipWS(raw, 1)] != '}' {
		dst = append(dst, ',')
	}
	if n == 2 && splices[1].start < splices[0].start {
		splices[0], splices[1] = splices[1], splices[0]
	}
	at := 1
	for _, sp := range splices[:n] {
		dst = append(dst, raw[at:sp.start]...)
		dst = mergeContext(dst, raw[sp.start:sp.end], sp.batch)
		at = sp.end
	}
	return append(dst, raw[at:]...)
}

// rootMember returns the value of the validated object b's root member name (the last one, as the splitter
// records) and its offset in b; nil when absent.
func rootMember(b []byte, name string) (val []byte, off int) {
	for key, v, i, ok := nextMember(b, 1); ok; key, v, i, ok = nextMember(b, i) {
		if string(key) == name {
			val, off = v, i-len(v)
		}
	}
	return val, off
}

// RewrittenSize bounds the size AppendEvent writes (exact when it must be: see MergedSize).
func (r *Rewrite) RewrittenSize(e *Span) int {
	return len(e.Raw) + len(r.Context) + len(r.SentAt) + len(r.Type) + len(r.Integrations) +
		len(`"context":,"type":"","sentAt":,"integrations":,`)
}

// MergedSize is the exact size AppendEvent writes, for the rare events near a size limit.
func (r *Rewrite) MergedSize(e *Span) int { return len(AppendEvent(nil, e, r)) }

// indexSpan returns the offset of sub inside s. sub must be a sub-slice of s (the scanner only makes two-index
// sub-slices of the body), so both end at the same backing array end and their capacities give the offset.
func indexSpan(s, sub []byte) int { return cap(s) - cap(sub) }

// mergeContext appends the event's context with the batch context's members it lacks. A context that is not an
// object (null, say) is replaced by the batch context. Both are validated objects; contexts have a handful of
// members, so the quadratic lookup is cheaper than building a set.
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
// previous member), with its raw key (between the quotes), and the index to continue from. ok is false at the end.
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

// hasMember reports whether the validated object b has a member named as the raw key is (escapes decoded on
// both sides, so "a" and "\u0061" are the same name and the merge never makes a duplicate).
func hasMember(b, key []byte) bool {
	var kb, mb [64]byte
	want := key
	if !plainASCII(key) {
		want, _ = appendDecoded(kb[:0], key)
	}
	for k, _, i, ok := nextMember(b, 1); ok; k, _, i, ok = nextMember(b, i) {
		name := k
		if !plainASCII(k) {
			name, _ = appendDecoded(mb[:0], k)
		}
		if bytes.Equal(name, want) {
			return true
		}
	}
	return false
}
