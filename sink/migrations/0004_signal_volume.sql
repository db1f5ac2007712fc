-- signal_volume_minute: the signal queue's volume per tenant, source, type, event and minute, kept as a
-- uniqExact state of signal ids, so a re-delivered or rehydrated signal (same id, same minute) is counted once.
-- A plain count() materialized view would count every re-delivery.
CREATE TABLE IF NOT EXISTS {database}.signal_volume_minute (
    tenant   String,
    source   String,
    type     String,
    event    String,
    minute   DateTime('UTC'),
    signals  AggregateFunction(uniqExact, String),
    visitors AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, source, type, event, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.signal_volume_minute_mv TO {database}.signal_volume_minute AS
SELECT
    tenant, source, type, event,
    toStartOfMinute(event_time) AS minute,
    uniqExactState(signal_id) AS signals,
    uniqExactState(if(anonymous_id != '', anonymous_id, user_id)) AS visitors
FROM {database}.signals
GROUP BY tenant, source, type, event, minute;
