-- First-touch attribution of a lead: its first signal (linked or from its anonymous history, as lead_timeline)
-- with that signal's campaign (first_utm_*), referrer and landing page, and the first signal that carried a campaign at
-- all (first_campaign_*), for leads whose first visit came without one. Ties on the millisecond go to the lower
-- signal id, so the answer is the same on every run.
-- Parameters: {tenant:String}, {email:String}.
SELECT
    argMin(signal_id, tuple(event_time_ms, signal_id)) AS first_signal_id,
    min(event_time) AS first_seen,
    argMin(linked, tuple(event_time_ms, signal_id)) AS first_linked,
    argMin(type, tuple(event_time_ms, signal_id)) AS first_type,
    argMin(if(page_path != '', page_path, path(url)), tuple(event_time_ms, signal_id)) AS landing_page,
    argMin(referrer, tuple(event_time_ms, signal_id)) AS first_referrer,
    argMin(utm_source, tuple(event_time_ms, signal_id)) AS first_utm_source,
    argMin(utm_medium, tuple(event_time_ms, signal_id)) AS first_utm_medium,
    argMin(utm_campaign, tuple(event_time_ms, signal_id)) AS first_utm_campaign,
    argMin(utm_term, tuple(event_time_ms, signal_id)) AS first_utm_term,
    argMin(utm_content, tuple(event_time_ms, signal_id)) AS first_utm_content,
    minIf(event_time, utm_source != '') AS first_campaign_at,
    argMinIf(utm_source, tuple(event_time_ms, signal_id), utm_source != '') AS first_campaign_source,
    argMinIf(utm_medium, tuple(event_time_ms, signal_id), utm_source != '') AS first_campaign_medium,
    argMinIf(utm_campaign, tuple(event_time_ms, signal_id), utm_source != '') AS first_campaign
FROM
(
    SELECT event_time, event_time_ms, signal_id, type, event, url, page_path, referrer, utm_source, utm_medium,
           utm_campaign, utm_term, utm_content, toUInt8(1) AS linked
    FROM lead_signals FINAL
    WHERE tenant = {tenant:String} AND email = {email:String}
    UNION ALL
    SELECT event_time, event_time_ms, signal_id, type, event, url, page_path, referrer,
           CAST(utm_source AS String) AS utm_source, CAST(utm_medium AS String) AS first_utm_medium,
           CAST(utm_campaign AS String) AS utm_campaign, utm_term, utm_content, toUInt8(0) AS linked
    FROM signals_latest
    WHERE tenant = {tenant:String} AND status = 'cold'
      AND ((anonymous_id != '' AND anonymous_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'anonymous'))
        OR (user_id != '' AND user_id IN (SELECT id FROM identities_latest
               WHERE tenant = {tenant:String} AND email = {email:String} AND id_kind = 'user')))
) AS history
HAVING count() > 0
