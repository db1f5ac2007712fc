-- signal_queue_minute: signal_volume_minute with its states merged, so analysts can query the exact per-minute
-- queue volume with plain SQL (no -Merge functions): distinct signals and visitors per tenant, source, type, event
-- and minute.
CREATE VIEW IF NOT EXISTS {database}.signal_queue_minute AS
SELECT
    tenant,
    source,
    type,
    event,
    minute,
    uniqExactMerge(signals) AS signals,
    uniqExactMerge(visitors) AS visitors
FROM {database}.signal_volume_minute
GROUP BY tenant, source, type, event, minute;
