package processor

// DefaultVisitorCacheBytes is the default budget of each partition's visitor cache (Config.VisitorCacheBytes).
const DefaultVisitorCacheBytes = 16 << 20

// visitorCache keeps the committed values of a partition's visitor-level keys (identity, held counter, aliases)
// in memory, including "absent". A visitor sends its events in bursts, and each cold event reads its identity
// and its held counter: from Pebble, every such read walks every level of the LSM (bloom filters, table
// iterators), which cost as much CPU as the event's own processing.
//
// It is a copy of what is on disk, never ahead of it: entries are filled by committed reads, and updated only
// where Pebble itself changes (applyRecords, wipe), so a batch's uncommitted writes never enter it.
//
// Memory is bounded by two generations of half the budget each: entries go into curr; when curr is full it
// becomes prev and the old prev is dropped whole; a hit in prev is copied into curr, so what is in use survives.
// Dropping whole maps is what keeps the bound: deleting single entries from a Go map under constant churn leaves
// its tables growing (measured: 8 MiB of entries took 57 MiB of heap after 2.5 million inserts).
// Dedup and held keys are not cached: each is read about once.
type visitorCache struct {
	curr, prev map[string][]byte // nil value: known absent; a key in curr shadows prev
	currSize   int               // approximate bytes in curr: keys, values and per-entry overhead
	budget     int               // for both generations
	hits       int64
	misses     int64
}

// entryOverhead approximates a map entry's own memory (string and slice headers, map slot, allocation rounding).
const entryOverhead = 160

func newVisitorCache(budget int) *visitorCache {
	if budget <= 0 {
		return nil
	}
	return &visitorCache{curr: map[string][]byte{}, prev: map[string][]byte{}, budget: budget}
}

// cacheable reports whether key is a visitor-level key.
func cacheable(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	switch key[0] {
	case prefixIdentity, prefixCounter, prefixAliases, prefixAliasSent, prefixErased:
		return true
	}
	return false
}

// get returns the cached committed value of key (nil: absent) and whether the cache knows it.
func (c *visitorCache) get(key []byte) ([]byte, bool) {
	if v, ok := c.curr[string(key)]; ok {
		c.hits++
		return v, true
	}
	if v, ok := c.prev[string(key)]; ok {
		c.hits++
		c.put(key, v)
		return v, true
	}
	c.misses++
	return nil, false
}

// put records the committed value of key (nil: absent). It keeps v, which must not change afterwards.
func (c *visitorCache) put(key, v []byte) {
	if old, ok := c.curr[string(key)]; ok {
		c.currSize += len(v) - len(old)
		c.curr[string(key)] = v
		return
	}
	if c.currSize+len(key)+len(v)+entryOverhead > c.budget/2 {
		c.prev, c.curr, c.currSize = c.curr, make(map[string][]byte, len(c.curr)), 0
	}
	c.curr[string(key)] = v
	c.currSize += len(key) + len(v) + entryOverhead
}

// reset forgets everything (the store was wiped).
func (c *visitorCache) reset() {
	c.curr, c.prev, c.currSize = map[string][]byte{}, map[string][]byte{}, 0
}
