-- Layer bronze: typed trades, append-only (duplicate deliveries are still here).
CREATE TABLE IF NOT EXISTS bronze_trades
(
    exchange        LowCardinality(String),
    symbol          LowCardinality(String)  COMMENT 'exchange-native symbol',
    trade_id        UInt64,
    price           Decimal(18, 8),
    quantity        Decimal(18, 8),
    quote_quantity  Decimal(18, 8)          COMMENT 'price x quantity, rounded to 8 decimals as Binance does',
    side            LowCardinality(String)  COMMENT 'taker side: buy or sell',
    is_buyer_maker  Bool,
    exchange_ts     DateTime64(6, 'UTC'),
    received_at     DateTime64(6, 'UTC'),
    ingested_at     DateTime64(6, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(exchange_ts)
ORDER BY (exchange, symbol, exchange_ts, trade_id)
TTL toDateTime(exchange_ts) + INTERVAL {{retention_days}} DAY;

-- Parsing happens once, into a Null table (stores nothing) that fans out to bronze and
-- to the rejects, so both see the same verdict for every message.
CREATE TABLE IF NOT EXISTS trades_parsed
(
    exchange        LowCardinality(String),
    symbol          LowCardinality(String),
    trade_id        String,
    price           String,
    quantity        String,
    side            String,
    exchange_ts     DateTime64(6, 'UTC'),
    received_at     DateTime64(6, 'UTC'),
    message         String,
    ingested_at     DateTime64(6, 'UTC'),
    trade_id_n      Nullable(UInt64),
    price_n         Nullable(Decimal(18, 8)),
    quantity_n      Nullable(Decimal(18, 8)),
    quote_n         Nullable(Decimal(18, 8)),
    side_n          String,
    reason          String
)
ENGINE = Null;
ALTER TABLE trades_parsed ADD COLUMN IF NOT EXISTS quote_n Nullable(Decimal(18, 8)) AFTER quantity_n;

-- How far an exchange timestamp may lie from the message's ingestion and still be a trade
-- (a clock or unit bug otherwise: 1970, or the far future). One row per limit; the newest
-- wins. An operator changes them with an INSERT (docs/medallion.md).
-- max_lateness starts a day inside COLD_TTL_MARGIN_DAYS ({{max_lateness_seconds}} s, filled
-- in by `cold-assets init`, which refuses a larger one): a later trade would land in a range
-- (the daily bars': a day) the TTL guard has no time left to repair before it is cold-only,
-- so it is a reject, mirrored by its ingestion time.
CREATE TABLE IF NOT EXISTS feed_limits
(
    name        LowCardinality(String),
    seconds     Int64,
    updated_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY name;

INSERT INTO feed_limits (name, seconds)
SELECT * FROM values('name String, seconds Int64', ('max_lateness', {{max_lateness_seconds}}), ('max_lead', 300))
WHERE name NOT IN (SELECT name FROM feed_limits);

-- Every value that cannot become a typed trade makes the message a reject with its reason,
-- never an error: an insert's other messages still reach bronze, and a feed handler that
-- retries a batch never meets the same error again (views are not atomic with the insert).
-- The _v2 views replace the first ones (dropped below, after the new ones exist).
CREATE MATERIALIZED VIEW IF NOT EXISTS trades_parse_v2_mv TO trades_parsed AS
SELECT
    exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at, message, ingested_at,
    toUInt64OrNull(trade_id)         AS trade_id_n,
    toDecimal64OrNull(price, 8)      AS price_n,
    toDecimal64OrNull(quantity, 8)   AS quantity_n,
    -- Rounded to 8 decimals as Binance does; NULL where it does not fit bronze's Decimal(18, 8).
    accurateCastOrNull(toDecimal128(price_n, 8) * quantity_n, 'Decimal(18, 8)') AS quote_n,
    -- Taker side. Binance reports isBuyerMaker (a maker buyer means the taker sold);
    -- Kraken reports the taker side as b/s.
    multiIf(
        exchange = 'binance' AND side = 'true',  'sell',
        exchange = 'binance' AND side = 'false', 'buy',
        exchange = 'kraken'  AND side = 'b',     'buy',
        exchange = 'kraken'  AND side = 's',     'sell',
        '') AS side_n,
    multiIf(
        trade_id_n IS NULL,                       'trade_id is not an unsigned integer',
        price_n IS NULL OR price_n <= 0,          'price is not a positive decimal',
        quantity_n IS NULL OR quantity_n <= 0,    'quantity is not a positive decimal',
        quote_n IS NULL,                          'price x quantity overflows Decimal(18, 8)',
        side_n = '',                              'side is not a known value for the exchange',
        exchange_ts < ingested_at - toIntervalSecond((SELECT argMax(seconds, updated_at) FROM feed_limits WHERE name = 'max_lateness')),
                                                  'exchange_ts is earlier than feed_limits.max_lateness before ingestion',
        exchange_ts > ingested_at + toIntervalSecond((SELECT argMax(seconds, updated_at) FROM feed_limits WHERE name = 'max_lead')),
                                                  'exchange_ts is later than feed_limits.max_lead after ingestion',
        '') AS reason
FROM trades_raw;

CREATE MATERIALIZED VIEW IF NOT EXISTS bronze_trades_v2_mv TO bronze_trades AS
SELECT
    exchange,
    symbol,
    assumeNotNull(trade_id_n)                                           AS trade_id,
    assumeNotNull(price_n)                                              AS price,
    assumeNotNull(quantity_n)                                           AS quantity,
    assumeNotNull(quote_n)                                              AS quote_quantity,
    side_n                                                              AS side,
    side_n = 'sell'                                                     AS is_buyer_maker,
    exchange_ts,
    received_at,
    ingested_at
FROM trades_parsed
WHERE reason = '';

DROP VIEW IF EXISTS trades_parse_mv;
DROP VIEW IF EXISTS bronze_trades_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_rejects_mv TO trades_rejects AS
SELECT exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at, message, ingested_at, reason
FROM trades_parsed
WHERE reason != '';
