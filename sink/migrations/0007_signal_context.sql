-- The analyst columns of signals, filled by the sink from the contract's derived fields of Signal v2 (a v1 record
-- leaves them empty): campaign (utm_*), page (referrer, page_path, page_title, page_search), device and library
-- (user_agent, ip, locale, timezone, library_*), the event's group and previous id, and the lead's email domain.
-- LowCardinality where a column has few distinct values per part (measured in BENCHMARKS.md, ## sink columns);
-- ClickHouse 18.16 needs allow_experimental_low_cardinality_type=1 for it, which Migrate sets on 18.x servers.
-- Rows stored before this migration read the defaults (''); none of these columns is in the sorting key, so a
-- newer version of a signal with the fields filled replaces an older one without them.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: a re-run after an interruption tolerates "column already exists"
-- (code 44 on 18.16, 15 on current releases) instead.
-- tolerate: 15, 44
ALTER TABLE {database}.signals
    ADD COLUMN group_id        String DEFAULT '',
    ADD COLUMN previous_id     String DEFAULT '',
    ADD COLUMN email_domain    LowCardinality(String) DEFAULT '',
    ADD COLUMN utm_source      LowCardinality(String) DEFAULT '',
    ADD COLUMN utm_medium      LowCardinality(String) DEFAULT '',
    ADD COLUMN utm_campaign    LowCardinality(String) DEFAULT '',
    ADD COLUMN utm_term        String DEFAULT '',
    ADD COLUMN utm_content     String DEFAULT '',
    ADD COLUMN referrer        String DEFAULT '',
    ADD COLUMN page_path       String DEFAULT '',
    ADD COLUMN page_title      String DEFAULT '',
    ADD COLUMN page_search     String DEFAULT '',
    ADD COLUMN user_agent      LowCardinality(String) DEFAULT '',
    ADD COLUMN ip              String DEFAULT '',
    ADD COLUMN locale          LowCardinality(String) DEFAULT '',
    ADD COLUMN timezone        LowCardinality(String) DEFAULT '',
    ADD COLUMN library_name    LowCardinality(String) DEFAULT '',
    ADD COLUMN library_version LowCardinality(String) DEFAULT '';

-- identities: a compaction tombstone (a deleted link, key tenant|id) is stored as a row with deleted = 1 and its
-- offset as the version, so it replaces the link it deletes; identities_latest and leads leave it out.
-- tolerate: 15, 44
ALTER TABLE {database}.identities ADD COLUMN deleted UInt8 DEFAULT 0;
