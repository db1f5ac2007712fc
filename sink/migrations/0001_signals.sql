-- signals: one logical row per signal id. ReplacingMergeTree keeps the highest version of a signal id within a
-- partition and sorting key, so the partition key and ORDER BY use only columns that never change between versions
-- of one signal id (the processor derives tenant, source, type, event and event_time from the event's content,
-- which is what signal_id hashes). status, email, rule_id, mapped_name and traits may change: they are not in the key.
-- Times are DateTime (seconds; 18.16 has no DateTime64) with the milliseconds kept in *_ms columns.
CREATE TABLE IF NOT EXISTS {database}.signals (
    tenant          String,
    signal_id       String,
    version         UInt64,
    status          String,
    source          String,
    type            String,
    event           String,
    message_id      String,
    anonymous_id    String,
    user_id         String,
    email           String,
    url             String,
    page_name       String,
    properties      String,
    traits          String,
    rule_id         String,
    mapped_name     String,
    mapped_keys     Array(String),
    mapped_values   Array(String),
    event_time      DateTime('UTC'),
    event_time_ms   Int64,
    received_at     DateTime('UTC'),
    processed_at    DateTime('UTC'),
    raw_partition   Int32,
    raw_offset      Int64,
    payload         String,
    kafka_topic     String,
    kafka_partition Int32,
    kafka_offset    Int64,
    loaded_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(event_time)
ORDER BY (tenant, toDate(event_time), source, type, event, signal_id);
