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
TTL toDateTime(exchange_ts) + INTERVAL 30 DAY;

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
    side_n          String,
    reason          String
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_parse_mv TO trades_parsed AS
SELECT
    exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at, message, ingested_at,
    toUInt64OrNull(trade_id)         AS trade_id_n,
    toDecimal64OrNull(price, 8)      AS price_n,
    toDecimal64OrNull(quantity, 8)   AS quantity_n,
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
        side_n = '',                              'side is not a known value for the exchange',
        '') AS reason
FROM trades_raw;

CREATE MATERIALIZED VIEW IF NOT EXISTS bronze_trades_mv TO bronze_trades AS
SELECT
    exchange,
    symbol,
    assumeNotNull(trade_id_n)                                           AS trade_id,
    assumeNotNull(price_n)                                              AS price,
    assumeNotNull(quantity_n)                                           AS quantity,
    toDecimal64(toDecimal128(assumeNotNull(price_n), 8) * assumeNotNull(quantity_n), 8) AS quote_quantity,
    side_n                                                              AS side,
    side_n = 'sell'                                                     AS is_buyer_maker,
    exchange_ts,
    received_at,
    ingested_at
FROM trades_parsed
WHERE reason = '';

CREATE MATERIALIZED VIEW IF NOT EXISTS trades_rejects_mv TO trades_rejects AS
SELECT exchange, symbol, trade_id, price, quantity, side, exchange_ts, received_at, message, ingested_at, reason
FROM trades_parsed
WHERE reason != '';
