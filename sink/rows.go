package sink

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/signalstage/signalstage/schemas"
)

// ErrUnconvertible marks a record the sink decoded but cannot store (a time outside ClickHouse's DateTime range, a
// missing key column). Such a record goes to dead_letters instead of stalling its partition.
var ErrUnconvertible = errors.New("record cannot be stored")

// ClickHouse DateTime holds seconds from 1970-01-01 to 2106-02-07 (UInt32).
var (
	minDateTime = time.Unix(0, 0)
	maxDateTime = time.Unix(1<<32-1, 0)
)

func checkTime(name string, t time.Time) error {
	if t.Before(minDateTime) || t.After(maxDateTime) {
		return fmt.Errorf("%w: %s %s is outside ClickHouse DateTime (1970..2106)", ErrUnconvertible, name, t.UTC().Format(time.RFC3339))
	}
	return nil
}

// signalRow is one row of signals. The ch tags are the insert's explicit column list (see columns).
type signalRow struct {
	Tenant         string    `ch:"tenant"`
	SignalID       string    `ch:"signal_id"`
	Version        uint64    `ch:"version"`
	Status         string    `ch:"status"`
	Source         string    `ch:"source"`
	Type           string    `ch:"type"`
	Event          string    `ch:"event"`
	MessageID      string    `ch:"message_id"`
	AnonymousID    string    `ch:"anonymous_id"`
	UserID         string    `ch:"user_id"`
	Email          string    `ch:"email"`
	URL            string    `ch:"url"`
	PageName       string    `ch:"page_name"`
	Properties     string    `ch:"properties"`
	Traits         string    `ch:"traits"`
	RuleID         string    `ch:"rule_id"`
	MappedName     string    `ch:"mapped_name"`
	MappedKeys     []string  `ch:"mapped_keys"`
	MappedValues   []string  `ch:"mapped_values"`
	EventTime      time.Time `ch:"event_time"`
	EventTimeMs    int64     `ch:"event_time_ms"`
	ReceivedAt     time.Time `ch:"received_at"`
	ProcessedAt    time.Time `ch:"processed_at"`
	RawPartition   int32     `ch:"raw_partition"`
	RawOffset      int64     `ch:"raw_offset"`
	Payload        []byte    `ch:"payload"` // []byte: the decoded bytes go to the column without a copy
	KafkaTopic     string    `ch:"kafka_topic"`
	KafkaPartition int32     `ch:"kafka_partition"`
	KafkaOffset    int64     `ch:"kafka_offset"`
	// From Signal v2 (empty for a v1 record): the contract's derived fields (migration 0007).
	GroupID        string `ch:"group_id"`
	PreviousID     string `ch:"previous_id"`
	EmailDomain    string `ch:"email_domain"`
	UTMSource      string `ch:"utm_source"`
	UTMMedium      string `ch:"utm_medium"`
	UTMCampaign    string `ch:"utm_campaign"`
	UTMTerm        string `ch:"utm_term"`
	UTMContent     string `ch:"utm_content"`
	Referrer       string `ch:"referrer"`
	PagePath       string `ch:"page_path"`
	PageTitle      string `ch:"page_title"`
	PageSearch     string `ch:"page_search"`
	UserAgent      string `ch:"user_agent"`
	IP             string `ch:"ip"`
	Locale         string `ch:"locale"`
	Timezone       string `ch:"timezone"`
	LibraryName    string `ch:"library_name"`
	LibraryVersion string `ch:"library_version"`
	// recKey, recRedrives and recTime are the record's, for the dead letter if ClickHouse refuses the row (not
	// columns). Its value is encoded again from the row then (recordValue): keeping it would pin the fetched records.
	recKey      string
	recRedrives int32
	recTime     time.Time
}

func newSignalRow(s *schemas.Signal, r *kgo.Record) (signalRow, error) {
	if s.Tenant == "" || s.SignalID == "" {
		return signalRow{}, fmt.Errorf("%w: empty tenant or signal_id", ErrUnconvertible)
	}
	if s.Version < 0 {
		return signalRow{}, fmt.Errorf("%w: negative version %d", ErrUnconvertible, s.Version)
	}
	for _, c := range []struct {
		name string
		t    time.Time
	}{{"event_time", s.EventTime}, {"received_at", s.ReceivedAt}, {"processed_at", s.ProcessedAt}} {
		if err := checkTime(c.name, c.t); err != nil {
			return signalRow{}, err
		}
	}
	// Sorted so that the same map always yields the same arrays (Go map order is random).
	var keys, values []string
	if len(s.Mapped) > 0 {
		keys = make([]string, 0, len(s.Mapped))
		for k := range s.Mapped {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		values = make([]string, len(keys))
		for i, k := range keys {
			values[i] = s.Mapped[k]
		}
	}
	return signalRow{
		Tenant: s.Tenant, SignalID: s.SignalID, Version: uint64(s.Version), Status: s.Status,
		Source: s.Source, Type: s.Type, Event: s.Event, MessageID: s.MessageID,
		AnonymousID: s.AnonymousID, UserID: s.UserID, Email: s.Email, URL: s.URL, PageName: s.PageName,
		Properties: s.Properties, Traits: s.Traits, RuleID: s.RuleID, MappedName: s.MappedName,
		MappedKeys: keys, MappedValues: values,
		EventTime: s.EventTime.UTC(), EventTimeMs: s.EventTime.UnixMilli(),
		ReceivedAt: s.ReceivedAt.UTC(), ProcessedAt: s.ProcessedAt.UTC(),
		RawPartition: s.RawPartition, RawOffset: s.RawOffset, Payload: s.Payload,
		KafkaTopic: r.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset,
		GroupID: s.GroupID, PreviousID: s.PreviousID, EmailDomain: s.EmailDomain,
		UTMSource: s.UTMSource, UTMMedium: s.UTMMedium, UTMCampaign: s.UTMCampaign, UTMTerm: s.UTMTerm,
		UTMContent: s.UTMContent, Referrer: s.Referrer, PagePath: s.PagePath, PageTitle: s.PageTitle,
		PageSearch: s.PageSearch, UserAgent: s.UserAgent, IP: s.IP, Locale: s.Locale, Timezone: s.Timezone,
		LibraryName: s.LibraryName, LibraryVersion: s.LibraryVersion,
		recKey: string(r.Key), recRedrives: schemas.Redrives(r), recTime: r.Timestamp,
	}, nil
}

// identityRow is one row of identities.
type identityRow struct {
	Tenant         string    `ch:"tenant"`
	IDKind         string    `ch:"id_kind"`
	ID             string    `ch:"id"`
	Email          string    `ch:"email"`
	AnonymousID    string    `ch:"anonymous_id"`
	UserID         string    `ch:"user_id"`
	Traits         string    `ch:"traits"`
	LinkedAt       time.Time `ch:"linked_at"`
	LinkedAtMs     int64     `ch:"linked_at_ms"`
	SignalID       string    `ch:"signal_id"`
	KafkaPartition int32     `ch:"kafka_partition"`
	KafkaOffset    uint64    `ch:"kafka_offset"`
	Deleted        uint8     `ch:"deleted"` // 1: a tombstone, the link of (tenant, id) was deleted
	// recKey and recRedrives are the record's, for the dead letter if ClickHouse refuses the row (not columns).
	// Its value is encoded again from the row then (recordValue): keeping it would pin the fetched records.
	recKey      string
	recRedrives int32
	recTime     time.Time
}

func newIdentityRow(l *schemas.IdentityLink, r *kgo.Record) (identityRow, error) {
	if l.Tenant == "" || l.ID == "" {
		return identityRow{}, fmt.Errorf("%w: empty tenant or id", ErrUnconvertible)
	}
	if err := checkTime("linked_at", l.LinkedAt); err != nil {
		return identityRow{}, err
	}
	return identityRow{
		Tenant: l.Tenant, IDKind: l.IDKind, ID: l.ID, Email: l.Email, AnonymousID: l.AnonymousID, UserID: l.UserID,
		Traits: l.Traits, LinkedAt: l.LinkedAt.UTC(), LinkedAtMs: l.LinkedAt.UnixMilli(), SignalID: l.SignalID,
		KafkaPartition: r.Partition, KafkaOffset: uint64(r.Offset), recKey: string(r.Key),
		recRedrives: schemas.Redrives(r), recTime: r.Timestamp,
	}, nil
}

// tombstoneRows are the rows of a compaction tombstone of identities (key tenant|id, no value): the link of that id
// is deleted, whichever kind it had (the topic's key has no kind), so one deleted row per kind, each with the
// tombstone's offset as its version, replaces the link. ok is false for a key without a tenant and id.
func tombstoneRows(r *kgo.Record) (rows []identityRow, ok bool) {
	tenant, id, ok := schemas.SplitKey(r.Key)
	if !ok || tenant == "" || id == "" {
		return nil, false
	}
	for _, kind := range []string{schemas.IDKindAnonymous, schemas.IDKindUser} {
		rows = append(rows, identityRow{Tenant: tenant, IDKind: kind, ID: id, LinkedAt: clampTime(r.Timestamp),
			LinkedAtMs: r.Timestamp.UnixMilli(), KafkaPartition: r.Partition, KafkaOffset: uint64(r.Offset), Deleted: 1,
			recKey: string(r.Key), recTime: r.Timestamp})
	}
	return rows, true
}

// deadLetterRow is one row of dead_letters_v2 (dead_letters is its view).
type deadLetterRow struct {
	Tenant          string    `ch:"tenant"`
	Stage           string    `ch:"stage"`
	Reason          string    `ch:"reason"`
	OriginTopic     string    `ch:"origin_topic"`
	OriginPartition int32     `ch:"origin_partition"`
	OriginOffset    int64     `ch:"origin_offset"`
	Key             string    `ch:"key"`
	Payload         string    `ch:"payload"`
	Retries         uint32    `ch:"retries"` // the version of dead_letters_v2: the highest count wins
	FailedAt        time.Time `ch:"failed_at"`
	KafkaTopic      string    `ch:"kafka_topic"`
	KafkaPartition  int32     `ch:"kafka_partition"`
	KafkaOffset     int64     `ch:"kafka_offset"`
}

func newDeadLetterRow(d *schemas.DeadLetter, r *kgo.Record) deadLetterRow {
	failed := d.FailedAt
	if checkTime("failed_at", failed) != nil {
		// A dead letter is never itself dead-lettered: keep it, stamped with the time the sink read it.
		failed = r.Timestamp
	}
	return deadLetterRow{
		Tenant: d.Tenant, Stage: d.Stage, Reason: d.Reason, OriginTopic: d.Topic, OriginPartition: d.Partition,
		OriginOffset: d.Offset, Key: string(d.Key), Payload: string(d.Payload), Retries: uint32(max(d.Retries, 0)),
		FailedAt: clampTime(failed), KafkaTopic: r.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset,
	}
}

// sinkDeadLetter is the row for a record the sink itself could not decode or convert: its origin is the record.
func sinkDeadLetter(r *kgo.Record, reason error) deadLetterRow {
	tenant, _, _ := schemas.SplitKey(r.Key)
	return deadLetterRow{
		Tenant: tenant, Stage: "sink", Reason: reason.Error(), OriginTopic: r.Topic, OriginPartition: r.Partition,
		OriginOffset: r.Offset, Key: string(r.Key), Payload: string(r.Value), Retries: uint32(schemas.Redrives(r)),
		FailedAt: clampTime(r.Timestamp), KafkaTopic: r.Topic, KafkaPartition: r.Partition, KafkaOffset: r.Offset,
	}
}

// newSignalsTable is the buffer of signals: appended column by column, PARTITION BY toYYYYMM(event_time).
func newSignalsTable(database string) *table[signalRow] {
	t := newTable[signalRow](database, "signals")
	t.columnar = appendSignalColumns
	t.month = func(r *signalRow) int { return monthOf(r.EventTime) }
	t.origin = originOfSignal
	t.tenant = func(r *signalRow) string { return r.Tenant }
	return t
}

// newIdentitiesTable is the buffer of identities, read from topic (its full name); not partitioned.
func newIdentitiesTable(database, topic string) *table[identityRow] {
	t := newTable[identityRow](database, "identities")
	t.origin = originOfIdentity(topic)
	t.tenant = func(r *identityRow) string { return r.Tenant }
	return t
}

// newDeadLettersTable is the buffer of dead_letters_v2: PARTITION BY toYYYYMM(failed_at).
func newDeadLettersTable(database string) *table[deadLetterRow] {
	t := newTable[deadLetterRow](database, "dead_letters_v2")
	t.month = func(r *deadLetterRow) int { return monthOf(r.FailedAt) }
	t.origin = originOfDeadLetter
	t.tenant = func(r *deadLetterRow) string { return r.Tenant }
	return t
}

// originOfSignal: a refused signal is kept as its record (key and value, as the sink's other dead letters, so
// Redrive can send it again); the reason names its id and version.
func originOfSignal(r *signalRow) origin {
	return origin{tenant: r.Tenant, topic: r.KafkaTopic, partition: r.KafkaPartition, offset: r.KafkaOffset,
		key: r.recKey, payload: string(r.recordValue()), retries: r.recRedrives, at: r.recTime,
		describe: fmt.Sprintf("signal %s version %d", r.SignalID, r.Version)}
}

// recordValue is the row's signal encoded again: its record's value, field for field (Mapped entries in key
// order; nil if it cannot be encoded, which the row's own decoding rules out).
func (r *signalRow) recordValue() []byte {
	s := schemas.Signal{
		Tenant: r.Tenant, SignalID: r.SignalID, Version: int64(r.Version), Status: r.Status, Source: r.Source,
		Type: r.Type, Event: r.Event, MessageID: r.MessageID, AnonymousID: r.AnonymousID, UserID: r.UserID,
		Email: r.Email, URL: r.URL, PageName: r.PageName, Properties: r.Properties, Traits: r.Traits,
		RuleID: r.RuleID, MappedName: r.MappedName, EventTime: time.UnixMilli(r.EventTimeMs).UTC(),
		ReceivedAt: r.ReceivedAt, ProcessedAt: r.ProcessedAt, RawPartition: r.RawPartition, RawOffset: r.RawOffset,
		Payload: r.Payload, GroupID: r.GroupID, PreviousID: r.PreviousID, EmailDomain: r.EmailDomain,
		EventContext: schemas.EventContext{UTMSource: r.UTMSource, UTMMedium: r.UTMMedium, UTMCampaign: r.UTMCampaign,
			UTMTerm: r.UTMTerm, UTMContent: r.UTMContent, Referrer: r.Referrer, PagePath: r.PagePath,
			PageTitle: r.PageTitle, PageSearch: r.PageSearch, UserAgent: r.UserAgent, IP: r.IP, Locale: r.Locale,
			Timezone: r.Timezone, LibraryName: r.LibraryName, LibraryVersion: r.LibraryVersion},
	}
	if len(r.MappedKeys) > 0 {
		s.Mapped = make(map[string]string, len(r.MappedKeys))
		for i, k := range r.MappedKeys {
			s.Mapped[k] = r.MappedValues[i]
		}
	}
	b, err := schemas.EncodeSignal(&s)
	if err != nil {
		return nil
	}
	return b
}

// recordValue is the row's identity link encoded again: its record's value, field for field.
func (r *identityRow) recordValue() []byte {
	if r.Deleted == 1 {
		return nil // a tombstone's value
	}
	l := schemas.IdentityLink{Tenant: r.Tenant, IDKind: r.IDKind, ID: r.ID, Email: r.Email, AnonymousID: r.AnonymousID,
		UserID: r.UserID, Traits: r.Traits, LinkedAt: time.UnixMilli(r.LinkedAtMs).UTC(), SignalID: r.SignalID}
	b, err := schemas.IdentityLinks.Encode(&l)
	if err != nil {
		return nil
	}
	return b
}

// originOfIdentity returns the origin of an identities row read from topic (the full topic name).
func originOfIdentity(topic string) func(*identityRow) origin {
	return func(r *identityRow) origin {
		return origin{tenant: r.Tenant, topic: topic, partition: r.KafkaPartition, offset: int64(r.KafkaOffset),
			key: r.recKey, payload: string(r.recordValue()), retries: r.recRedrives, at: r.recTime,
			describe: fmt.Sprintf("identity %s %s -> %s", r.IDKind, r.ID, r.Email)}
	}
}

func originOfDeadLetter(r *deadLetterRow) origin {
	return origin{tenant: r.Tenant, topic: r.KafkaTopic, partition: r.KafkaPartition, offset: r.KafkaOffset,
		key: r.Key, payload: r.Payload, retries: int32(r.Retries), at: r.FailedAt,
		describe: fmt.Sprintf("dead letter of %s/%d@%d", r.OriginTopic, r.OriginPartition, r.OriginOffset)}
}

// refusedDeadLetter is the dead_letters row of a row ClickHouse refused to store. failed_at is the record's
// timestamp, not the wall clock: a redelivered record refused again is the same row (same key, same monthly
// partition), so it folds instead of staying a duplicate in another partition.
func refusedDeadLetter(o origin, reason string) deadLetterRow {
	return deadLetterRow{
		Tenant: o.tenant, Stage: "sink", Reason: reason, OriginTopic: o.topic, OriginPartition: o.partition,
		OriginOffset: o.offset, Key: o.key, Payload: o.payload, Retries: uint32(max(o.retries, 0)), FailedAt: clampTime(o.at),
		KafkaTopic: o.topic, KafkaPartition: o.partition, KafkaOffset: o.offset,
	}
}

func clampTime(t time.Time) time.Time {
	switch {
	case t.Before(minDateTime):
		return minDateTime.UTC()
	case t.After(maxDateTime):
		return maxDateTime.UTC()
	}
	return t.UTC()
}

// reasonKind is the low-cardinality label of a dead-letter reason for metrics.
func reasonKind(err error) string {
	switch {
	case errors.Is(err, schemas.ErrUnknownFingerprint), errors.Is(err, schemas.ErrIncompatible),
		errors.Is(err, schemas.ErrUnknownSchemaID), errors.Is(err, schemas.ErrNoRegistry):
		return "unknown_schema"
	case errors.Is(err, schemas.ErrRegistryUnavailable):
		return "registry_unavailable"
	case errors.Is(err, schemas.ErrNotSingleObject), errors.Is(err, schemas.ErrCorrupt):
		return "undecodable"
	case errors.Is(err, ErrUnconvertible):
		return "unconvertible"
	}
	return "other"
}
