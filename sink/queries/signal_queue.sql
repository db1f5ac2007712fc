-- The signal queue of one tenant: what is arriving, grouped by source, type and event name, with the counts of
-- the last 24 hours and 7 days (distinct signals: signals_latest has one row per signal, its latest version), when
-- each was first and last seen (first_seen over all time, from signal_volume_minute), whether a mapping rule covers
-- it (the rule and mapped name of its latest signal) and the latest payload as a sample to draft a rule from.
-- Parameters: {tenant:String}.
SELECT
    source,
    type,
    event,
    countIf(event_time >= now() - INTERVAL 1 DAY) AS signals_24h,
    count() AS signals_7d,
    first_seen_ever AS first_seen,
    max(event_time) AS last_seen,
    argMax(rule_id, tuple(event_time_ms, signal_id)) AS latest_rule_id,
    argMax(mapped_name, tuple(event_time_ms, signal_id)) AS latest_mapped_name,
    latest_rule_id != '' AS mapped,
    argMax(payload, tuple(event_time_ms, signal_id)) AS sample_payload
FROM signals_latest
ANY LEFT JOIN
(
    SELECT source, type, event, min(minute) AS first_seen_ever
    FROM signal_volume_minute
    WHERE tenant = {tenant:String}
    GROUP BY source, type, event
) AS seen USING (source, type, event)
WHERE tenant = {tenant:String} AND event_time >= now() - INTERVAL 7 DAY
GROUP BY source, type, event, first_seen_ever
ORDER BY signals_7d DESC, source, type, event
