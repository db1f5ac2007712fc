-- dead_letters_v2: dead_letters versioned by its retry count. 0003's ReplacingMergeTree() had no version, so the
-- last row inserted won: a replay of signals.dlq wrote a redriven row back with retries 0 and the default redrive
-- selected it again. With ReplacingMergeTree(retries) the highest count wins, whatever is inserted later. The key
-- is unchanged (where the dead letter was read from), and failed_at is the record's own time (the sink no longer
-- stamps its wall clock), so every copy of one dead letter lands in the same monthly partition and folds.
-- Redrive reads it and writes it; dead_letters becomes a view of it, with FINAL.
CREATE TABLE IF NOT EXISTS {database}.dead_letters_v2 (
    tenant          String,
    stage           String,
    reason          String,
    origin_topic    String,
    origin_partition Int32,
    origin_offset   Int64,
    key             String,
    payload         String,
    retries         UInt32,
    failed_at       DateTime('UTC'),
    kafka_topic     String,
    kafka_partition Int32,
    kafka_offset    Int64,
    loaded_at       DateTime('UTC') DEFAULT now()
) ENGINE = ReplacingMergeTree(retries)
PARTITION BY toYYYYMM(failed_at)
ORDER BY (kafka_topic, kafka_partition, kafka_offset, stage, origin_topic, origin_partition, origin_offset);

-- The rows of 0003's table. A re-run after the table was dropped below tolerates UNKNOWN_TABLE (60); after the view
-- was created it copies dead_letters_v2 FINAL onto itself, which folds.
-- tolerate: 60
INSERT INTO {database}.dead_letters_v2
SELECT tenant, stage, reason, origin_topic, origin_partition, origin_offset, key, payload,
       toUInt32(greatest(retries, 0)), failed_at, kafka_topic, kafka_partition, kafka_offset, loaded_at
FROM {database}.dead_letters;

DROP TABLE IF EXISTS {database}.dead_letters;

CREATE VIEW IF NOT EXISTS {database}.dead_letters AS
SELECT tenant, stage, reason, origin_topic, origin_partition, origin_offset, key, payload, retries, failed_at,
       kafka_topic, kafka_partition, kafka_offset, loaded_at
FROM {database}.dead_letters_v2 FINAL;
