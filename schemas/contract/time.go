package contract

import (
	"time"
	"unsafe"
)

// The event time rule, after Segment's "Timestamps" spec (Spec: Common Fields):
//
//  1. An event that carries a receivedAt of its own was delivered by Segment (the Webhooks destination): Segment
//     already corrected its timestamp. Its time is timestamp, else originalTimestamp: never corrected twice.
//  2. Otherwise, an event with a sentAt came straight from a client library, whose clock may be off. Its time is
//     Segment's correction, received − (sentAt − timestamp), with received the edge's receive time: the gap
//     between the call and its send, measured on the client's clock, placed before the moment the edge received
//     it. (For /v1/batch, the batch's sentAt applies to each event: the edge merges it into events that lack one.)
//  3. Otherwise the time is timestamp, else originalTimestamp, as sent.
//  4. Without any parseable timestamp, or when the result is implausible (before 2000-01-01, or more than 24 h
//     after the event was received: the sink partitions by event time), the time is the receive time.
//
// timestamp is tried first, then originalTimestamp (each corrected as in 2 when that applies); the first plausible
// one wins. The client's own timestamp is kept as originalTimestamp, sentAt as sentAt. Times are RFC 3339
// (ISO-8601 with a zone), kept at millisecond precision.

// minEventTime and maxEventAhead bound a plausible event time.
var minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxEventAhead = 24 * time.Hour

// Plausible reports whether t can be the time of an event received at received (zero: unknown).
func Plausible(t, received time.Time) bool {
	if t.Before(minEventTime) {
		return false
	}
	return received.IsZero() || !t.After(received.Add(maxEventAhead))
}

// parseTime parses an RFC 3339 time given as decoded text; ok is false when empty or unparseable.
func parseTime(b []byte) (time.Time, bool) {
	if len(b) == 0 {
		return time.Time{}, false
	}
	if ms, ok := parseUTCMillis(b); ok {
		return time.UnixMilli(ms).UTC(), true
	}
	// The string only lives for the call: time.Parse keeps none of it in its result.
	t, err := time.Parse(time.RFC3339Nano, unsafe.String(&b[0], len(b)))
	return t, err == nil
}

// Times is the result of the event time rule, in Unix milliseconds (0: absent).
type Times struct {
	EventMs, OriginalMs, SentAtMs int64
}

// EventTimes applies the event time rule to the texts of timestamp, originalTimestamp, sentAt and receivedAt as
// the event carries them (nil when absent) for an event the edge received at received.
func EventTimes(timestamp, originalTimestamp, sentAt, receivedAt []byte, received time.Time) Times {
	received = received.UTC().Truncate(time.Millisecond)
	if out, ok := eventTimesMillis(timestamp, originalTimestamp, sentAt, receivedAt, received); ok {
		return out
	}
	return eventTimes(timestamp, originalTimestamp, sentAt, receivedAt, received)
}

// Bounds of the rule in Unix milliseconds.
var minEventMs = minEventTime.UnixMilli()

const maxEventAheadMs = int64(maxEventAhead / time.Millisecond)

// maxSkewMs bounds sentAt − timestamp for eventTimesMillis: well inside what a time.Duration holds, so that
// time.Time.Sub, which saturates beyond, never would have.
const maxSkewMs = int64(1) << 62 / int64(time.Millisecond)

// eventTimesMillis is eventTimes in integer milliseconds, for the times every Segment library writes (what
// parseUTCMillis reads); ok is false when one of the texts is of another form, or the skew is beyond
// maxSkewMs: eventTimes decides those. received is already truncated to the millisecond. The result is
// eventTimes's: every time involved is a whole number of milliseconds, so the arithmetic is exact.
func eventTimesMillis(timestamp, originalTimestamp, sentAt, receivedAt []byte, received time.Time) (Times, bool) {
	var out Times
	ms := func(b []byte) (int64, bool, bool) { // value, present, ok
		if len(b) == 0 {
			return 0, false, true
		}
		v, ok := parseUTCMillis(b)
		return v, ok, ok
	}
	sent, hasSent, ok := ms(sentAt)
	if !ok {
		return out, false
	}
	ts, hasTs, ok1 := ms(timestamp)
	ot, hasOt, ok2 := ms(originalTimestamp)
	if !ok1 || !ok2 {
		return out, false
	}
	if hasSent {
		out.SentAtMs = sent
	}
	delivered := len(receivedAt) > 0
	if delivered && hasOt {
		out.OriginalMs = ot
	}
	recvMs := received.UnixMilli()
	correct := hasSent && !delivered && !received.IsZero()
	for _, c := range [2]struct {
		t  int64
		ok bool
	}{{ts, hasTs}, {ot, hasOt}} {
		if !c.ok {
			continue
		}
		t := c.t
		if out.OriginalMs == 0 {
			out.OriginalMs = t
		}
		if correct {
			skew := sent - t
			if skew > maxSkewMs || skew < -maxSkewMs {
				return Times{}, false
			}
			t = recvMs - skew
		}
		if t >= minEventMs && (received.IsZero() || t <= recvMs+maxEventAheadMs) {
			out.EventMs = t
			return out, true
		}
	}
	out.EventMs = recvMs
	return out, true
}

// eventTimes is the rule on time.Time values, for any RFC 3339 text; received is truncated to the millisecond.
func eventTimes(timestamp, originalTimestamp, sentAt, receivedAt []byte, received time.Time) Times {
	var out Times
	sent, hasSent := parseTime(sentAt)
	if hasSent {
		out.SentAtMs = sent.UnixMilli()
	}
	delivered := len(receivedAt) > 0
	if delivered {
		// Segment's originalTimestamp is the client's; its timestamp is already corrected.
		if t, ok := parseTime(originalTimestamp); ok {
			out.OriginalMs = t.UnixMilli()
		}
	}
	correct := hasSent && !delivered && !received.IsZero()
	for _, b := range [2][]byte{timestamp, originalTimestamp} {
		t, ok := parseTime(b)
		if !ok {
			continue
		}
		if out.OriginalMs == 0 {
			out.OriginalMs = t.UnixMilli()
		}
		if correct {
			t = received.Add(-sent.Sub(t))
		}
		if Plausible(t, received) {
			out.EventMs = t.UnixMilli() // plausible times are after 1970: UnixMilli truncates to the millisecond
			return out
		}
	}
	out.EventMs = received.UnixMilli()
	return out
}

// parseUTCMillis parses the form every Segment library writes, YYYY-MM-DDTHH:MM:SS[.f…]Z, straight to Unix
// milliseconds (time.Parse costs several times more); anything else is left to time.Parse. Fractions beyond
// milliseconds are truncated, as the millisecond result of time.Parse would be.
func parseUTCMillis(b []byte) (int64, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' ||
		b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	d, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, y) || h > 23 ||
		mi > 59 || sec > 59 {
		return 0, false
	}
	ms := 0
	if rest := b[19 : len(b)-1]; len(rest) > 0 {
		if rest[0] != '.' || len(rest) < 2 {
			return 0, false
		}
		for k, c := range rest[1:] {
			if c < '0' || c > '9' {
				return 0, false
			}
			if k < 3 {
				ms = ms*10 + int(c-'0')
			}
		}
		for k := len(rest) - 1; k < 3; k++ {
			ms *= 10
		}
	}
	days := daysFromCivil(y, mo, d)
	return ((days*24+int64(h))*60+int64(mi))*60000 + int64(sec)*1000 + int64(ms), true
}

func daysIn(m, y int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard
// Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
