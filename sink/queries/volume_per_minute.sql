-- Volume per minute of one tenant over the last {minutes} minutes, per source, type and event, with the minute's
-- share of that event's average in the window (spike_ratio 5 = five times the usual rate). Counts are distinct
-- signal ids (uniqExact states), so re-deliveries never inflate them.
-- Parameters: {tenant:String}, {minutes:UInt32}.
SELECT
    minute,
    source,
    type,
    event,
    signals,
    visitors,
    round(signals / avg_signals, 2) AS spike_ratio
FROM
(
    SELECT minute, source, type, event, uniqExactMerge(signals) AS signals, uniqExactMerge(visitors) AS visitors
    FROM signal_volume_minute
    WHERE tenant = {tenant:String} AND minute >= now() - {minutes:UInt32} * 60
    GROUP BY minute, source, type, event
) AS per_minute
ANY LEFT JOIN
(
    SELECT source, type, event, uniqExactMerge(signals) / {minutes:UInt32} AS avg_signals
    FROM signal_volume_minute
    WHERE tenant = {tenant:String} AND minute >= now() - {minutes:UInt32} * 60
    GROUP BY source, type, event
) AS per_window USING (source, type, event)
ORDER BY minute, source, type, event
