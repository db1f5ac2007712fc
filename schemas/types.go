package schemas

import "time"

// Signal statuses.
const (
	// StatusCold marks a signal whose visitor is not linked to a lead yet; it is held for rehydration.
	StatusCold = "cold"
	// StatusLinked marks a signal attributed to a lead (Email is set).
	StatusLinked = "linked"
)

// Sources of an event.
const (
	SourceSegment = "segment"
	SourceWebhook = "webhook"
)

// Identity id kinds.
const (
	IDKindAnonymous = "anonymous"
	IDKindUser      = "user"
)

// RawEvent is one event as the edge accepted it (topic signals.raw). Payload is the event's JSON byte for byte.
type RawEvent struct {
	Tenant     string    `avro:"tenant"`
	KeyID      string    `avro:"key_id"`
	Source     string    `avro:"source"`
	ReceivedAt time.Time `avro:"received_at"`
	RequestID  string    `avro:"request_id"`
	Payload    []byte    `avro:"payload"`
}

// Signal is a deduplicated, identity-resolved event (topic signals.resolved). The pair (SignalID, Version) is
// unique; a higher Version of the same SignalID replaces the lower one downstream.
type Signal struct {
	Tenant       string            `avro:"tenant"`
	SignalID     string            `avro:"signal_id"`
	Version      int64             `avro:"version"`
	Status       string            `avro:"status"`
	Source       string            `avro:"source"`
	Type         string            `avro:"type"`
	Event        string            `avro:"event"`
	MessageID    string            `avro:"message_id"`
	AnonymousID  string            `avro:"anonymous_id"`
	UserID       string            `avro:"user_id"`
	Email        string            `avro:"email"`
	URL          string            `avro:"url"`
	PageName     string            `avro:"page_name"`
	Properties   string            `avro:"properties"`
	Traits       string            `avro:"traits"`
	RuleID       string            `avro:"rule_id"`
	MappedName   string            `avro:"mapped_name"`
	Mapped       map[string]string `avro:"mapped"`
	EventTime    time.Time         `avro:"event_time"`
	ReceivedAt   time.Time         `avro:"received_at"`
	ProcessedAt  time.Time         `avro:"processed_at"`
	RawPartition int32             `avro:"raw_partition"`
	RawOffset    int64             `avro:"raw_offset"`
	Payload      []byte            `avro:"payload"`
}

// IdentityLink links one visitor id of a tenant to a lead (topic identities, compacted, keyed tenant|id).
type IdentityLink struct {
	Tenant      string    `avro:"tenant"`
	IDKind      string    `avro:"id_kind"`
	ID          string    `avro:"id"`
	Email       string    `avro:"email"`
	AnonymousID string    `avro:"anonymous_id"`
	UserID      string    `avro:"user_id"`
	Traits      string    `avro:"traits"`
	LinkedAt    time.Time `avro:"linked_at"`
	SignalID    string    `avro:"signal_id"`
}

// DeadLetter is what a stage could not process (topic signals.dlq), with the reason and its origin.
type DeadLetter struct {
	Tenant    string    `avro:"tenant"`
	Stage     string    `avro:"stage"`
	Reason    string    `avro:"reason"`
	Topic     string    `avro:"topic"`
	Partition int32     `avro:"partition"`
	Offset    int64     `avro:"offset"`
	Key       []byte    `avro:"key"`
	Payload   []byte    `avro:"payload"`
	Retries   int32     `avro:"retries"`
	FailedAt  time.Time `avro:"failed_at"`
}
