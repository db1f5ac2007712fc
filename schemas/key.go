package schemas

import "strings"

// KeySep separates the tenant from the routing id in record keys.
const KeySep = "|"

// RoutingKey returns the record key tenant|id. Every co-partitioned topic uses it with kgo's default
// (Kafka-compatible murmur2) partitioner, so the same visitor lands on the same partition number everywhere.
func RoutingKey(tenant, id string) []byte {
	b := make([]byte, 0, len(tenant)+len(KeySep)+len(id))
	b = append(b, tenant...)
	b = append(b, KeySep...)
	return append(b, id...)
}

// SplitKey is the inverse of RoutingKey. ok is false when key has no separator.
func SplitKey(key []byte) (tenant, id string, ok bool) {
	tenant, id, ok = strings.Cut(string(key), KeySep)
	return tenant, id, ok
}
