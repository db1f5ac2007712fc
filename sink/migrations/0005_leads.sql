-- lead_fields: one row per tenant, lead (email) and enrichment field with its latest non-empty value, fed by
-- materialized views from linked signals (identify traits and the fields a mapping rule extracted; a rule's value
-- wins over a trait of the same event) and from identity links. ReplacingMergeTree on the event time in ms keeps
-- the latest value; re-delivered rows replace themselves.
CREATE TABLE IF NOT EXISTS {database}.lead_fields (
    tenant     String,
    email      String,
    field      String,
    value      String,
    updated_ms UInt64,
    signal_id  String
) ENGINE = ReplacingMergeTree(updated_ms)
ORDER BY (tenant, email, field);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.lead_fields_signals_mv TO {database}.lead_fields AS
SELECT tenant, email, tupleElement(kv, 1) AS field, tupleElement(kv, 2) AS value,
       toUInt64(greatest(event_time_ms, 0)) AS updated_ms, signal_id
FROM {database}.signals
-- A tuple is (field, value, from_rule); a trait is dropped when the rule mapped the same field.
ARRAY JOIN arrayFilter(x -> tupleElement(x, 2) != '' AND (tupleElement(x, 3) = 1 OR NOT has(mapped_keys, tupleElement(x, 1))),
    arrayConcat(arrayMap((k, v) -> (k, v, 1), mapped_keys, mapped_values),
    [('name', visitParamExtractString(traits, 'name'), 0),
     ('first_name', visitParamExtractString(traits, 'first_name'), 0),
     ('last_name', visitParamExtractString(traits, 'last_name'), 0),
     ('company', visitParamExtractString(traits, 'company'), 0),
     ('title', visitParamExtractString(traits, 'title'), 0)])) AS kv
WHERE email != '';

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.lead_fields_identities_mv TO {database}.lead_fields AS
SELECT tenant, email, tupleElement(kv, 1) AS field, tupleElement(kv, 2) AS value,
       toUInt64(greatest(linked_at_ms, 0)) AS updated_ms, signal_id
FROM {database}.identities
ARRAY JOIN arrayFilter(x -> tupleElement(x, 2) != '',
    [('name', visitParamExtractString(traits, 'name'), 0),
     ('first_name', visitParamExtractString(traits, 'first_name'), 0),
     ('last_name', visitParamExtractString(traits, 'last_name'), 0),
     ('company', visitParamExtractString(traits, 'company'), 0),
     ('title', visitParamExtractString(traits, 'title'), 0)]) AS kv
WHERE email != '';

-- leads: one row per tenant and email with the latest enrichment fields, whichever identify, identity link or
-- mapping rule supplied them. FINAL makes it exact before background merges have run.
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
GROUP BY tenant, email;
