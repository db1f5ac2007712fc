package schemas

import (
	"strings"
	"time"
)

// TopicErasures is the topic of erasure requests (compacted, one partition, keyed by ErasureKey): every stage
// that holds personal data consumes it from the start. The sink deletes the person's rows from every table and
// drops rows of theirs it loads later; the processor is to drop their state and links and suppress their events.
const TopicErasures = "signals.erasures"

// Erasure asks every stage to erase one person of a tenant: the lead Email (lower case) and/or the visitor ids.
// At least one of Email, AnonymousID and UserID is set. A stage also erases what it links to them (the ids linked
// to the email, the email linked to an id).
type Erasure struct {
	Tenant      string    `avro:"tenant"`
	RequestID   string    `avro:"request_id"`
	Email       string    `avro:"email"`
	AnonymousID string    `avro:"anonymous_id"`
	UserID      string    `avro:"user_id"`
	RequestedAt time.Time `avro:"requested_at"`
}

// Erasures is the codec of signals.erasures.
var Erasures = mustCodec[Erasure]("erasure")

// ErasureKey is the record key of e: tenant|email:E, else tenant|anonymous:A, else tenant|user:U. A second request
// for the same person replaces the first on compaction, so the topic holds one record per erased person for good
// (never a tombstone: the request must outlive every replay).
func ErasureKey(e *Erasure) []byte {
	id := "user:" + e.UserID
	switch {
	case e.Email != "":
		id = "email:" + strings.ToLower(e.Email)
	case e.AnonymousID != "":
		id = "anonymous:" + e.AnonymousID
	}
	return RoutingKey(e.Tenant, id)
}
