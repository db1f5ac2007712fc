package processor

import (
	"testing"
	"time"
)

// Versions survive the dedup window: a replay after the window (its dedup entry expired), then a late link that
// rehydrates what was held before and after, emit versions above every earlier emission of the signal id, so the
// sink's ReplacingMergeTree(version) keeps the latest content.
func TestVersionsSurviveTheWindow(t *testing.T) {
	r := newRig(t, func(c *CoreConfig) { c.DedupWindow = time.Hour })
	page := `{"type":"page","anonymousId":"a","messageId":"m1","properties":{"name":"Pricing"}}`
	var all []int64 // every version of the page's id, in emission order
	collect := func(what string, got []int64) {
		t.Helper()
		if len(got) == 0 {
			t.Fatalf("%s: nothing emitted", what)
		}
		all = append(all, got...)
		for i := 1; i < len(all); i++ {
			if all[i] <= all[i-1] {
				t.Fatalf("%s: versions %v do not strictly increase", what, all)
			}
		}
	}
	versions := func(id string) []int64 {
		var out []int64
		for _, s := range r.em.signals {
			if s.SignalID == id {
				out = append(out, s.Version)
			}
		}
		return out
	}
	first := r.at("t", page, 1)
	id := first[0].SignalID
	collect("first", versions(id))
	n := len(r.em.signals)

	r.now = r.now.Add(2 * time.Hour) // past the window: the dedup entry goes
	sweepAll(t, r)
	if r.core.Stats.DedupExpired != 1 {
		t.Fatalf("dedup expired = %d, want 1", r.core.Stats.DedupExpired)
	}
	r.at("t", page, 1) // a replay reads offset 1 again
	collect("replay after the window", versionsFrom(r, id, n))
	n = len(r.em.signals)

	r.now = r.now.Add(2 * time.Hour) // the replay's entry expires too; both held records are still held
	sweepAll(t, r)
	r.event("t", `{"type":"identify","anonymousId":"a","messageId":"i1","traits":{"email":"a@x.io"}}`)
	collect("late link", versionsFrom(r, id, n))
	if got := len(all); got != 4 {
		t.Fatalf("%d emissions of the page, want 4 (first, replay, two rehydrated holds): %v", got, all)
	}
}

// Versions are an emission count in the low bits under a millisecond clock in the high bits: the count goes on
// from what the state knows, the clock part never goes back, and a state from before (small versions) continues.
func TestNextVersion(t *testing.T) {
	at := time.UnixMilli(1_800_000_000_000)
	ms := at.UnixMilli()
	for _, tc := range []struct {
		name  string
		known int64
		now   time.Time
		want  int64
	}{
		{"first", 0, at, ms<<versionSeqBits | 1},
		{"next, later", ms<<versionSeqBits | 1, at.Add(time.Second), (ms+1000)<<versionSeqBits | 2},
		{"next, same millisecond", ms<<versionSeqBits | 1, at, ms<<versionSeqBits | 2},
		{"next, clock behind the state's", (ms+5000)<<versionSeqBits | 3, at, (ms+5000)<<versionSeqBits | 4},
		{"state from before: small version", 2, at, ms<<versionSeqBits | 3},
		{"count full: carries", ms<<versionSeqBits | versionSeqMask, at, (ms+1)<<versionSeqBits | 0},
	} {
		if got := nextVersion(tc.known, tc.now); got != tc.want || got <= tc.known {
			t.Errorf("%s: nextVersion(%d) = %d, want %d", tc.name, tc.known, got, tc.want)
		}
	}
}

func versionsFrom(r *coreRig, id string, n int) []int64 {
	var out []int64
	for _, s := range r.em.signals[n:] {
		if s.SignalID == id {
			out = append(out, s.Version)
		}
	}
	return out
}
