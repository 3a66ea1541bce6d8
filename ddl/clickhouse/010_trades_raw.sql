-- Layer raw: trades exactly as the feed handlers received them.
-- Every field a handler extracts stays a string as received; the original message is kept
-- so that a reject can always be explained and replayed. Kept COLD_WARM_RETENTION_DAYS (30)
-- days in the warm tier ({{retention_days}}: `cold-assets init` fills it in);
-- cold.raw_trades holds it after that.
CREATE TABLE IF NOT EXISTS trades_raw
(
    exchange     LowCardinality(String),
    symbol       LowCardinality(String)  COMMENT 'exchange-native symbol, e.g. BTCUSDT, XBT/USDT',
    trade_id     String                  COMMENT 'trade id as received',
    price        String                  COMMENT 'price as received',
    quantity     String                  COMMENT 'quantity as received',
    side         String                  COMMENT 'side as received: binance isBuyerMaker true/false, kraken b/s',
    exchange_ts  DateTime64(6, 'UTC')    COMMENT 'trade time reported by the exchange',
    received_at  DateTime64(6, 'UTC')    COMMENT 'time the feed handler received the message',
    message      String CODEC(ZSTD(3))   COMMENT 'original message',
    ingested_at  DateTime64(6, 'UTC') DEFAULT now64(6) COMMENT 'insert time; the offload watermark'
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(exchange_ts)
ORDER BY (exchange, symbol, exchange_ts)
TTL toDateTime(exchange_ts) + INTERVAL {{retention_days}} DAY;

-- Messages that cannot be parsed: never blocking ingestion, never lost. Kept by their
-- ingestion time: a reject's own exchange_ts may be the bogus value that made it one.
CREATE TABLE IF NOT EXISTS trades_rejects
(
    exchange     LowCardinality(String),
    symbol       LowCardinality(String),
    trade_id     String,
    price        String,
    quantity     String,
    side         String,
    exchange_ts  DateTime64(6, 'UTC'),
    received_at  DateTime64(6, 'UTC'),
    message      String CODEC(ZSTD(3)),
    ingested_at  DateTime64(6, 'UTC'),
    reason       LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(exchange_ts)
ORDER BY (exchange, symbol, exchange_ts)
TTL toDateTime(ingested_at) + INTERVAL {{retention_days}} DAY;
ALTER TABLE trades_rejects MODIFY TTL toDateTime(ingested_at) + INTERVAL {{retention_days}} DAY;
