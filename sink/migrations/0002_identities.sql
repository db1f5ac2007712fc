-- identities: the compacted identities topic as a table, one logical row per tenant, id kind and id. The version is
-- the record's offset: a key always lives on one partition, so its latest record has the highest offset, the same
-- rule log compaction applies.
CREATE TABLE IF NOT EXISTS {database}.identities (
    tenant          String,
    id_kind         String,
    id              String,
    email           String,
    anonymous_id    String,
    user_id         String,
    traits          String,
    linked_at       DateTime('UTC'),
    linked_at_ms    Int64,
    signal_id       String,
    kafka_partition Int32,
    kafka_offset    UInt64,
    loaded_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(kafka_offset)
ORDER BY (tenant, id_kind, id);
