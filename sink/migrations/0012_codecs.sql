-- Compression codecs where the engine has them (CODEC came with ClickHouse 19.x; 18.16 parses no CODEC, so Migrate
-- skips these statements there and its parts stay LZ4). ZSTD for the long JSON and hex columns: measured on the
-- current engine (BENCHMARKS.md, ## sink storage) the raw payload went from 39 to 5.8 bytes a signal and the
-- SHA-256 hex signal id from 64 to 32. A codec change is metadata: parts written before keep LZ4 until they merge.
-- requires: 20.1
ALTER TABLE {database}.signals
    MODIFY COLUMN payload    String CODEC(ZSTD(3)),
    MODIFY COLUMN properties String CODEC(ZSTD(3)),
    MODIFY COLUMN traits     String CODEC(ZSTD(3)),
    MODIFY COLUMN signal_id  String CODEC(ZSTD(1)),
    MODIFY COLUMN message_id String CODEC(ZSTD(1));

-- requires: 20.1
ALTER TABLE {database}.lead_signals
    MODIFY COLUMN properties String CODEC(ZSTD(3)),
    MODIFY COLUMN signal_id  String CODEC(ZSTD(1));

-- requires: 20.1
ALTER TABLE {database}.dead_letters_v2 MODIFY COLUMN payload String CODEC(ZSTD(3));
