-- Exact by default. signals, identities and lead_signals are raw ReplacingMergeTree tables: until background merges
-- have run they hold every delivered version of a row, so a plain count() over them over-counts, and
-- `FINAL PREWHERE` filters before the versions are folded (a signal cold in v1 and linked in v2 still counts as
-- cold). Analysts query these views instead: FINAL folds the versions and every filter a query adds runs after it
-- (WHERE, pushed into the view with enable_optimize_predicate_expression=1, stays a WHERE, never a PREWHERE).

-- signals_latest: one row per signal id, its latest version, without the sink's bookkeeping columns.
-- visitor is the id that owns the visitor (the anonymous id, else the user id; '' when the event had neither).
CREATE VIEW IF NOT EXISTS {database}.signals_latest AS
SELECT
    tenant, signal_id, version, status, source, type, event, message_id, anonymous_id, user_id,
    if(anonymous_id != '', anonymous_id, user_id) AS visitor,
    email, email_domain, group_id, previous_id, url, page_path, page_name, page_title, page_search, referrer,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content, user_agent, ip, locale, timezone,
    library_name, library_version, properties, traits, rule_id, mapped_name, mapped_keys, mapped_values,
    event_time, event_time_ms, received_at, processed_at, payload
FROM {database}.signals FINAL;

-- identities_latest: the live links, one per tenant, id kind and id (a deleted link, a tombstone on the topic, is
-- left out).
CREATE VIEW IF NOT EXISTS {database}.identities_latest AS
SELECT tenant, id_kind, id, email, anonymous_id, user_id, traits, linked_at, linked_at_ms, signal_id
FROM {database}.identities FINAL
WHERE deleted = 0;
