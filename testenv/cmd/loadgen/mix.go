package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"
)

// mix makes the request bodies. Request i's body depends only on i (and the run id), so a re-sent request is
// byte-identical to its first post.
type mix struct {
	segment     bool
	batch       int
	visitors    int
	identifyPct float64
	resendPct   float64
	run         string
	pool        [][]byte // track mix
}

func newMix(name string, batch, visitors int, identifyPct, resendPct float64, run string) (*mix, error) {
	switch {
	case visitors < 1:
		return nil, fmt.Errorf("-visitors must be positive")
	case identifyPct < 0 || identifyPct > 100:
		return nil, fmt.Errorf("-identify-pct must be in 0..100")
	case resendPct < 0 || resendPct > 100:
		return nil, fmt.Errorf("-resend-pct must be in 0..100")
	}
	m := &mix{batch: batch, visitors: visitors, identifyPct: identifyPct, resendPct: resendPct, run: run}
	switch name {
	case "track":
		m.pool = trackBodies(256, batch, visitors)
	case "segment":
		m.segment = true
		if m.run == "" {
			m.run = strconv.FormatInt(time.Now().UnixNano(), 36)
		}
	default:
		return nil, fmt.Errorf("-mix must be track or segment, not %q", name)
	}
	return m, nil
}

// body returns request i's body and whether it is to be posted a second time.
func (m *mix) body(i int) ([]byte, bool) {
	if !m.segment {
		return m.pool[i%len(m.pool)], false
	}
	r := rand.New(rand.NewPCG(uint64(i), 0x5167))
	now := time.Now().UTC()
	var b bytes.Buffer
	b.Grow(m.batch * 560)
	if m.batch > 1 {
		b.WriteByte('[')
	}
	for j := range m.batch {
		if j > 0 {
			b.WriteByte(',')
		}
		seq := i*m.batch + j
		v := r.IntN(m.visitors)
		ts := now.Add(-time.Duration(r.IntN(5000)) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		switch p := r.Float64() * 100; {
		case p < m.identifyPct:
			fmt.Fprintf(&b, `{"type":"identify","anonymousId":"anon-%d","messageId":"lg-%s-%d",`+
				`"traits":{"email":"Visitor%d@Example.com","name":"Visitor %d","company":"Company %d","title":"Buyer"},`+
				`"context":{"ip":"203.0.113.9","library":{"name":"analytics.js","version":"4.1.0"}},"timestamp":"%s"}`,
				v, m.run, seq, v, v, v%500, ts)
		case p < m.identifyPct+30:
			fmt.Fprintf(&b, `{"type":"page","anonymousId":"anon-%d","messageId":"lg-%s-%d","name":"Pricing",`+
				`"properties":{"url":"https://example.com/pricing?p=%d","path":"/pricing","title":"Pricing"},`+
				`"context":{"ip":"203.0.113.9","library":{"name":"analytics.js","version":"4.1.0"},`+
				`"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},"timestamp":"%s"}`,
				v, m.run, seq, r.IntN(50), ts)
		default:
			fmt.Fprintf(&b, `{"type":"track","event":"%s","anonymousId":"anon-%d","messageId":"lg-%s-%d",`+
				`"properties":{"plan":"pro","source":"landing","value":%d},"context":{"ip":"203.0.113.9",`+
				`"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing",`+
				`"path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},`+
				`"timestamp":"%s"}`,
				trackEvents[r.IntN(len(trackEvents))], v, m.run, seq, seq, ts)
		}
	}
	if m.batch > 1 {
		b.WriteByte(']')
	}
	return b.Bytes(), r.Float64()*100 < m.resendPct
}

var trackEvents = []string{"Signed Up", "Demo Requested", "Feature Used", "Invite Sent", "Plan Viewed"}

// trackBodies pre-generates request bodies so that the generator spends its CPU on sending, not on building JSON:
// the two cores are shared with the edge and the broker.
func trackBodies(n, batch, visitors int) [][]byte {
	out := make([][]byte, n)
	seq := 0
	for i := range out {
		var b bytes.Buffer
		if batch > 1 {
			b.WriteByte('[')
		}
		for j := range batch {
			if j > 0 {
				b.WriteByte(',')
			}
			seq++
			fmt.Fprintf(&b, `{"type":"track","event":"Signed Up","anonymousId":"anon-%d","messageId":"lg-%d-%d",`+
				`"properties":{"plan":"pro","source":"landing","value":%d},"context":{"ip":"203.0.113.9",`+
				`"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://example.com/pricing",`+
				`"path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"},`+
				`"timestamp":"2026-11-30T05:00:00.000Z","sentAt":"2026-11-30T05:00:00.100Z"}`,
				seq%visitors, time.Now().UnixNano(), seq, seq)
		}
		if batch > 1 {
			b.WriteByte(']')
		}
		out[i] = b.Bytes()
	}
	return out
}
