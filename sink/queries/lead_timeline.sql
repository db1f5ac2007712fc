-- A lead's timeline: every signal attributed to the lead, oldest first, including the ones it made while still
-- anonymous (cold) and that were emitted again linked once the visitor was identified (rehydrated = version > 1:
-- the signal was emitted again, by rehydration or a re-mapping under newer rules).
-- Parameters: {tenant:String}, {email:String} (lower case, as the processor stores it).
SELECT
    event_time,
    source,
    type,
    event,
    mapped_name,
    rule_id,
    url,
    page_name,
    anonymous_id,
    user_id,
    version,
    version > 1 AS rehydrated,
    signal_id,
    properties
FROM signals FINAL
WHERE tenant = {tenant:String} AND email = {email:String}
ORDER BY event_time_ms, signal_id
