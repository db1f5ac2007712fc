package processor

import (
	"testing"
	"time"

	"github.com/signalstage/signalstage/schemas"
)

func TestImplausibleEventTime(t *testing.T) {
	recv := time.Date(2026, 11, 30, 12, 0, 0, 123_456_789, time.UTC)
	recvMs := recv.Truncate(time.Millisecond)
	for _, tc := range []struct {
		name, fields string
		want         time.Time
	}{
		{"plausible", `"timestamp":"2026-11-30T10:00:00.5Z"`, time.Date(2026, 11, 30, 10, 0, 0, 5e8, time.UTC)},
		{"epoch zero", `"timestamp":"1970-01-01T00:00:00Z"`, recvMs},
		{"before 2000", `"timestamp":"1999-12-31T23:59:59Z"`, recvMs},
		{"2000 itself", `"timestamp":"2000-01-01T00:00:00Z"`, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"23h ahead (clock skew)", `"timestamp":"2026-12-01T11:00:00Z"`, time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC)},
		{"25h ahead", `"timestamp":"2026-12-01T13:00:00Z"`, recvMs},
		{"year 9999", `"timestamp":"9999-01-01T00:00:00Z"`, recvMs},
		{"implausible timestamp, plausible originalTimestamp", `"timestamp":"1970-01-01T00:00:00Z","originalTimestamp":"2026-11-29T00:00:00Z"`,
			time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)},
		{"not a time", `"timestamp":"yesterday"`, recvMs},
		{"none", `"x":1`, recvMs},
		{"other zone", `"timestamp":"2026-11-30T10:00:00+02:00"`, time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
	} {
		payload := `{"type":"track","event":"E","anonymousId":"a",` + tc.fields + `}`
		r := newRig(t, nil)
		r.now = recv
		out := r.event("t", payload)
		if len(out) != 1 || !out[0].EventTime.Equal(tc.want) {
			t.Errorf("%s: signals %+v, want event time %v", tc.name, out, tc.want)
		}
	}
}

func TestPinnedEncoding(t *testing.T) {
	p := pinned{set: true, EventTimeMs: 1700000000123, Source: "segment", Type: "page", Event: "/pricing"}
	for _, e := range []dedupEntry{{FirstSeenMs: 1, Offset: 2, Version: 3}, {FirstSeenMs: 1, Offset: 2, Version: 3, First: p}} {
		got, err := decodeDedup(e.encode())
		if err != nil || got != e {
			t.Errorf("dedup entry %+v decoded as %+v, %v", e, got, err)
		}
	}
	for _, h := range []heldSignal{{HeldAtMs: 1, Version: 1, Key: []byte("k"), Source: "segment", Payload: []byte("{}")},
		{HeldAtMs: 1, Version: 1, Key: []byte("k"), Source: "segment", Payload: []byte("{}"), First: p}} {
		got, err := decodeHeld(h.encode())
		if err != nil || got.First != h.First || string(got.Payload) != "{}" {
			t.Errorf("held %+v decoded as %+v, %v", h, got, err)
		}
	}
}

// A new version of a signal (replay, rehydration) keeps its first version's event_time, source, type and event,
// even when deriving them again would give something else (here: a replayed record whose received_at differs,
// and a held signal whose first version was derived under other rules).
func TestNewVersionsKeepKeyColumns(t *testing.T) {
	r := newRig(t, nil)
	t0 := r.now
	track := `{"type":"track","event":"E","anonymousId":"a","timestamp":"1970-01-01T00:00:00Z"}`
	first := r.at("acme", track, 7)
	if len(first) != 1 || !first[0].EventTime.Equal(t0) {
		t.Fatalf("first version: %+v, want event time %v (received_at)", first, t0)
	}
	r.now = t0.Add(time.Hour) // the replayed record says another received_at
	again := r.at("acme", track, 7)
	if len(again) != 1 || versionCount(again[0].Version) != 2 || !again[0].EventTime.Equal(t0) {
		t.Fatalf("replay: version %d event time %v, want 2 and %v", again[0].Version, again[0].EventTime, t0)
	}

	// A held page view whose first version was emitted with another event name and time (an older release).
	r.event("acme", `{"type":"page","anonymousId":"v","properties":{"url":"https://x.io/pricing"}}`)
	hk := heldKey("acme", visitor{schemas.IDKindAnonymous, "v"}, 0)
	b, _ := r.st.Get(hk)
	h, err := decodeHeld(b)
	if err != nil || !h.First.set || h.First.Event != "/pricing" {
		t.Fatalf("held page view: %+v %v", h.First, err)
	}
	old := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h.First = pinned{set: true, EventTimeMs: old.UnixMilli(), Source: "segment", Type: "page", Event: "Pricing (old)"}
	r.st.Set(hk, h.encode())
	out := r.event("acme", `{"type":"identify","anonymousId":"v","traits":{"email":"v@x.io"}}`)
	var found bool
	for _, s := range out {
		if s.Type == "page" {
			found = true
			if s.Event != "Pricing (old)" || !s.EventTime.Equal(old) || s.Status != schemas.StatusLinked {
				t.Errorf("rehydrated page view: event %q time %v status %s, want the first version's", s.Event, s.EventTime, s.Status)
			}
		}
	}
	if !found {
		t.Fatal("the page view was not rehydrated")
	}
}
