-- Erasure of a person (signals.erasures, `sink forget`). erased_ids is the suppression list: every email, anonymous
-- id and user id an erasure removed, so rows of theirs read again later (a replay, a late record) are dropped on
-- load instead of bringing the person back. It holds identifiers of erased people on purpose, as a suppression
-- list must; nothing else about them. erasure_log is the report: per request, the rows removed from each table.
CREATE TABLE IF NOT EXISTS {database}.erased_ids (
    tenant     String,
    id_kind    String,
    id         String,
    request_id String,
    erased_at  DateTime('UTC')
) ENGINE = ReplacingMergeTree()
ORDER BY (tenant, id_kind, id);

CREATE TABLE IF NOT EXISTS {database}.erasure_log (
    tenant     String,
    request_id String,
    erased_at  DateTime('UTC'),
    emails     UInt32,
    visitor_ids UInt32,
    tables     Array(String),
    rows       Array(UInt64)
) ENGINE = MergeTree()
ORDER BY (tenant, request_id, erased_at);
