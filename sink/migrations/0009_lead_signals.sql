-- lead_signals: the linked signals of each lead, sorted by (tenant, email, event_time), so a lead's history and
-- rollups read one lead's rows instead of scanning the tenant's (signals is sorted by tenant, day, source, type,
-- event). Fed from signals by a materialized view, so it follows every insert whatever wrote it; a signal's
-- versions replace each other as in signals (same key: the email and event time of a linked signal id do not
-- change between its versions). Raw like signals: query it with FINAL (the shipped queries do). Not partitioned,
-- so the backfill below is one INSERT whatever months the history spans.
CREATE TABLE IF NOT EXISTS {database}.lead_signals (
    tenant        String,
    email         String,
    event_time    DateTime('UTC'),
    event_time_ms Int64,
    signal_id     String,
    version       UInt64,
    source        String,
    type          String,
    event         String,
    mapped_name   String,
    rule_id       String,
    anonymous_id  String,
    user_id       String,
    url           String,
    page_path     String,
    page_title    String,
    referrer      String,
    utm_source    String,
    utm_medium    String,
    utm_campaign  String,
    utm_term      String,
    utm_content   String,
    properties    String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, email, event_time, signal_id);

-- The LowCardinality columns are cast to String: 18.16 drops every row of a block the sink inserted natively when
-- the view filters it and selects a LowCardinality column as it is.
CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.lead_signals_mv TO {database}.lead_signals AS
SELECT tenant, email, event_time, event_time_ms, signal_id, version, source, type, event, mapped_name, rule_id,
       anonymous_id, user_id, url, page_path, page_title, referrer, CAST(utm_source AS String) AS utm_source,
       CAST(utm_medium AS String) AS utm_medium, CAST(utm_campaign AS String) AS utm_campaign, utm_term,
       utm_content, properties
FROM {database}.signals
WHERE email != '';

-- The history loaded before this migration. Idempotent: a re-run, or a row the view also wrote meanwhile, is a
-- duplicate version that ReplacingMergeTree folds.
INSERT INTO {database}.lead_signals
SELECT tenant, email, event_time, event_time_ms, signal_id, version, source, type, event, mapped_name, rule_id,
       anonymous_id, user_id, url, page_path, page_title, referrer, utm_source, utm_medium, utm_campaign, utm_term,
       utm_content, properties
FROM {database}.signals
WHERE email != '';

-- leads: as in 0005, and only the leads that still have a live identity link or a linked signal, so a lead whose
-- links were deleted (identity tombstones) and whose signals were erased leaves it.
DROP TABLE IF EXISTS {database}.leads;

CREATE VIEW IF NOT EXISTS {database}.leads AS
SELECT
    tenant,
    email,
    anyIf(value, field = 'name') AS name,
    anyIf(value, field = 'first_name') AS first_name,
    anyIf(value, field = 'last_name') AS last_name,
    anyIf(value, field = 'company') AS company,
    anyIf(value, field = 'title') AS title,
    groupArray((field, value)) AS fields,
    toDateTime(intDiv(max(updated_ms), 1000), 'UTC') AS updated_at
FROM {database}.lead_fields FINAL
WHERE (tenant, email) IN (SELECT tenant, email FROM {database}.identities_latest)
   OR (tenant, email) IN (SELECT tenant, email FROM {database}.lead_signals)
GROUP BY tenant, email;
