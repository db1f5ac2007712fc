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

// RawEvent is one event as the edge accepted it (topic signals.raw). Payload is the event's JSON byte for byte
// (after the edge's documented rewrites: batch context and sentAt merged, the /v1 path's type added). From
// raw_event.v2 on, the edge also writes what the event contract (schemas/contract) derives from it, once, in
// EventFields; a record written before has EventFields.Contract == 0 and its readers derive the fields
// themselves with the same contract function.
type RawEvent struct {
	Tenant     string    `avro:"tenant"`
	KeyID      string    `avro:"key_id"`
	Source     string    `avro:"source"`
	ReceivedAt time.Time `avro:"received_at"`
	RequestID  string    `avro:"request_id"`
	Payload    []byte    `avro:"payload"`
	EventFields
}

// EventFields is what the event contract derives from one event (schemas/contract documents every rule). Ids are
// as sent (escapes decoded), placeholders included; VisitorKind and VisitorID say which id owns the visitor ("" when
// both are placeholders). Times are Unix milliseconds, 0 when absent.
type EventFields struct {
	// Contract is the version of the contract that derived the fields (contract.Version); 0 in a record written
	// before the contract (raw_event.v1), whose fields are all empty.
	Contract    int32  `avro:"contract"`
	Type        string `avro:"type"`  // track, page, screen, identify, group, alias; webhook for generic signals
	Event       string `avro:"event"` // the event name
	MessageID   string `avro:"message_id"`
	AnonymousID string `avro:"anonymous_id"`
	UserID      string `avro:"user_id"`
	GroupID     string `avro:"group_id"` // groupId, else context.groupId
	PreviousID  string `avro:"previous_id"`
	VisitorKind string `avro:"visitor_kind"` // IDKindAnonymous, IDKindUser or ""
	VisitorID   string `avro:"visitor_id"`
	// Email is the lead email the event carries (lower-cased), "" when none or for a group call.
	Email      string `avro:"email"`
	URL        string `avro:"url"`
	PageName   string `avro:"page_name"`
	Properties string `avro:"properties"` // canonical JSON object
	Traits     string `avro:"traits"`     // canonical JSON object
	// EventTimeMs is the event time after clock-skew correction and the plausibility clamp; OriginalTimestampMs
	// the client's own timestamp; SentAtMs the client's send time.
	EventTimeMs         int64  `avro:"event_time_ms"`
	OriginalTimestampMs int64  `avro:"original_timestamp_ms"`
	SentAtMs            int64  `avro:"sent_at_ms"`
	SignalID            string `avro:"signal_id"` // hex SHA-256 of the canonical event without transport members
	EventContext
}

// EventContext is the analyst context of an event: campaign (utm), page, device and library, from Segment's
// context object (and a page call's properties). The edge derives it, the processor carries it into the Signal,
// the sink stores it as columns.
type EventContext struct {
	UTMSource      string `avro:"utm_source"`
	UTMMedium      string `avro:"utm_medium"`
	UTMCampaign    string `avro:"utm_campaign"`
	UTMTerm        string `avro:"utm_term"`
	UTMContent     string `avro:"utm_content"`
	Referrer       string `avro:"referrer"`
	PagePath       string `avro:"page_path"`
	PageTitle      string `avro:"page_title"`
	PageSearch     string `avro:"page_search"`
	UserAgent      string `avro:"user_agent"`
	IP             string `avro:"ip"`
	Locale         string `avro:"locale"`
	Timezone       string `avro:"timezone"`
	LibraryName    string `avro:"library_name"`
	LibraryVersion string `avro:"library_version"`
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
	// From signal.v2 on:
	GroupID     string `avro:"group_id"` // the event's group, else the group its visitor last joined
	PreviousID  string `avro:"previous_id"`
	EmailDomain string `avro:"email_domain"` // domain of Email
	EventContext
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
