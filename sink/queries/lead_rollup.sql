-- A lead's activity rollup for scoring: first and last seen, signals in all, over the last 7 and 30 days, and the
-- same per signal type (types, types_7d, types_30d: parallel arrays, one entry per type, sorted by type). It
-- counts the lead's linked signals and its anonymous history (as lead_timeline: the cold signals of the visitor
-- ids linked to it), each signal once (FINAL and signals_latest fold redeliveries and versions).
-- Parameters: {tenant:String}, {email:String}.
SELECT
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    sum(n) AS signals,
    sum(n7) AS signals_7d,
    sum(n30) AS signals_30d,
    sum(anonymous) AS anonymous_signals,
    arrayMap(x -> tupleElement(x, 1), arraySort(groupArray((type, n7, n30)))) AS types,
    arrayMap(x -> tupleElement(x, 2), arraySort(groupArray((type, n7, n30)))) AS types_7d,
    arrayMap(x -> tupleElement(x, 3), arraySort(groupArray((type, n7, n30)))) AS types_30d
FROM
(
    SELECT
        type,
        min(event_time) AS first_seen,
        max(event_time) AS last_seen,
        count() AS n,
        countIf(event_time >= now() - INTERVAL 7 DAY) AS n7,
        countIf(event_time >= now() - INTERVAL 30 DAY) AS n30,
        countIf(linked = 0) AS anonymous
    FROM
    (
    SELECT event_time, event_time_ms, signal_id, type, event, url, page_path, referrer, utm_source, utm_medium,
           utm_campaign, utm_term, utm_content, toUInt8(1) AS linked
    FROM lead_signals FINAL
    WHERE tenant = {tenant:String} AND email = {email:String}
    UNION ALL
    SELECT event_time, event_time_ms, signal_id, type, event, url, page_path, referrer,
           CAST(utm_source AS String) AS utm_source, CAST(utm_medium AS String) AS utm_medium,
           CAST(utm_campaign AS String) AS utm_campaign, utm_term, utm_content, toUInt8(0) AS linked
    FROM signals_latest
    WHERE tenant = {tenant:String} AND status = 'cold'
      AND ((anonymous_id != '' AND anonymous_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'anonymous'))
        OR (user_id != '' AND user_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'user')))
) AS history
    GROUP BY type
) AS per_type
HAVING signals > 0
