-- dead_letters: what the pipeline could not process (the signals.dlq topic, and records the sink itself cannot
-- decode or convert), with the reason and the origin. Keyed by where the dead letter was read from, so a redelivered
-- dead letter replaces itself.
CREATE TABLE IF NOT EXISTS {database}.dead_letters (
    tenant          String,
    stage           String,
    reason          String,
    origin_topic    String,
    origin_partition Int32,
    origin_offset   Int64,
    key             String,
    payload         String,
    retries         Int32,
    failed_at       DateTime('UTC'),
    kafka_topic     String,
    kafka_partition Int32,
    kafka_offset    Int64,
    loaded_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(failed_at)
ORDER BY (kafka_topic, kafka_partition, kafka_offset, stage, origin_topic, origin_partition, origin_offset);
