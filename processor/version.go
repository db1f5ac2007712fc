package processor

import "time"

// Versions. Every later emission of a signal id must carry a higher version than every earlier one, whatever
// state expired or was lost (a replay after the dedup window, a late link after the replay's entry expired,
// a restore that lost something): the sink's ReplacingMergeTree(version) keeps the highest. The state alone
// cannot promise that (dedup entries expire), so a version is a hybrid logical clock: the processor's wall
// clock in milliseconds in the high bits, a count in the low versionSeqBits.
//
//	version = max(known ms, now ms) << 16 | (known count + 1)
//
// With the state at hand (a replay within the window, a rehydration) the count goes on from what the state
// knows, so the versions of one id are 1, 2, 3 ... in their low bits (tests and operators can read emission
// order there), and the clock part never goes back, even when this instance's clock is behind the one that
// wrote the state. Without it (expired, lost), the count starts again at 1 under a later clock, which is above
// every earlier emission as long as the wall clock moved on since (it has: the window is hours). Values fit
// Avro's long and the sink's UInt64 for the next 4000 years; versions written before (1, 2, ...) continue.
const (
	versionSeqBits = 16
	versionSeqMask = 1<<versionSeqBits - 1
)

// nextVersion is the version of the next emission of a signal whose highest known version is known (0: none
// known).
func nextVersion(known int64, now time.Time) int64 {
	ms := now.UnixMilli()
	if known <= 0 {
		return ms<<versionSeqBits | 1
	}
	seq := known&versionSeqMask + 1
	if seq > versionSeqMask {
		return known + 1 // 65 535 emissions of one id: carry into the clock part, still above known
	}
	if k := known >> versionSeqBits; k > ms {
		ms = k
	}
	return ms<<versionSeqBits | seq
}

// versionCount is the emission count of a version: 1 for a signal's first emission, n for the n-th one the
// state knew of (what tests compare with a model; the clock part differs from run to run).
func versionCount(v int64) int64 { return v & versionSeqMask }
