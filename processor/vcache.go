package processor

// DefaultVisitorCacheBytes is the default budget of each partition's visitor cache (Config.VisitorCacheBytes).
const DefaultVisitorCacheBytes = 8 << 20

// visitorCache keeps the committed values of a partition's visitor-level keys (identity, held counter, aliases)
// in memory, including "absent". A visitor sends its events in bursts, and each cold event reads its identity
// and its held counter: from Pebble, every such read walks every level of the LSM (bloom filters, table
// iterators), which cost as much CPU as the event's own processing.
//
// It is a copy of what is on disk, never ahead of it: entries are filled by committed reads, and updated only
// where Pebble itself changes (applyRecords, wipe), so a batch's uncommitted writes never enter it. Memory is
// bounded by a byte budget; when full, an arbitrary eighth of the entries is dropped (map order), which is
// cheap and good enough for bursts. Dedup and held keys are not cached: each is read about once.
type visitorCache struct {
	m      map[string][]byte // nil value: known absent
	size   int               // approximate bytes held: keys, values and per-entry overhead
	budget int
	hits   int64
	misses int64
}

// entryOverhead approximates a map entry's own memory (string and slice headers, map slot).
const entryOverhead = 64

func newVisitorCache(budget int) *visitorCache {
	if budget <= 0 {
		return nil
	}
	return &visitorCache{m: make(map[string][]byte), budget: budget}
}

// cacheable reports whether key is a visitor-level key.
func cacheable(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	switch key[0] {
	case prefixIdentity, prefixCounter, prefixAliases, prefixAliasSent:
		return true
	}
	return false
}

// get returns the cached committed value of key (nil: absent) and whether the cache knows it.
func (c *visitorCache) get(key []byte) ([]byte, bool) {
	v, ok := c.m[string(key)]
	if ok {
		c.hits++
	} else {
		c.misses++
	}
	return v, ok
}

// put records the committed value of key (nil: absent). It keeps v, which must not change afterwards.
func (c *visitorCache) put(key, v []byte) {
	if old, ok := c.m[string(key)]; ok {
		c.size += len(v) - len(old)
		c.m[string(key)] = v
		return
	}
	for c.size+len(key)+len(v)+entryOverhead > c.budget && len(c.m) > 0 {
		c.shrink()
	}
	c.m[string(key)] = v
	c.size += len(key) + len(v) + entryOverhead
}

// shrink drops about an eighth of the entries.
func (c *visitorCache) shrink() {
	n := len(c.m)/8 + 1
	for k, v := range c.m {
		if n == 0 {
			break
		}
		delete(c.m, k)
		c.size -= len(k) + len(v) + entryOverhead
		n--
	}
}

// reset forgets everything (the store was wiped).
func (c *visitorCache) reset() {
	clear(c.m)
	c.size = 0
}
