-- A lead's timeline, oldest first: its linked signals (lead_signals: the ones it made identified, and the ones it
-- made while anonymous that were emitted again linked when it was identified: rehydrated = version > 1, emitted
-- again by rehydration or a re-mapping under newer rules), plus its anonymous history that stayed cold: signals
-- of the visitor ids identities_latest links to the lead whose hold had expired before the identification
-- (linked = 0).
-- Parameters: {tenant:String}, {email:String} (lower case, as the processor stores it).
SELECT
    event_time,
    source,
    type,
    event,
    mapped_name,
    rule_id,
    url,
    page_path,
    anonymous_id,
    user_id,
    version,
    version > 1 AS rehydrated,
    linked,
    signal_id,
    properties
FROM
(
    SELECT event_time, event_time_ms, source, type, event, mapped_name, rule_id, url, page_path, anonymous_id,
           user_id, version, toUInt8(1) AS linked, signal_id, properties
    FROM lead_signals FINAL
    WHERE tenant = {tenant:String} AND email = {email:String}
    UNION ALL
    SELECT event_time, event_time_ms, source, type, event, mapped_name, rule_id, url, page_path, anonymous_id,
           user_id, version, toUInt8(0) AS linked, signal_id, properties
    FROM signals_latest
    WHERE tenant = {tenant:String} AND status = 'cold'
      AND ((anonymous_id != '' AND anonymous_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'anonymous'))
        OR (user_id != '' AND user_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'user')))
) AS history
ORDER BY event_time_ms, signal_id
