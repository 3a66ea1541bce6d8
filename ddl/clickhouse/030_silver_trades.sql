-- Reference data: which exchange-native symbol is which instrument, and its tick and lot size.
CREATE TABLE IF NOT EXISTS instruments
(
    exchange         LowCardinality(String),
    exchange_symbol  LowCardinality(String),
    symbol           LowCardinality(String)  COMMENT 'canonical BASE-QUOTE',
    base_asset       LowCardinality(String),
    quote_asset      LowCardinality(String),
    tick_size        Decimal(18, 8),
    lot_size         Decimal(18, 8)
)
ENGINE = ReplacingMergeTree
ORDER BY (exchange, exchange_symbol);

INSERT INTO instruments
SELECT * FROM values(
    'exchange String, exchange_symbol String, symbol String, base_asset String, quote_asset String, tick_size Decimal(18, 8), lot_size Decimal(18, 8)',
    ('binance', 'BTCUSDT',   'BTC-USDT', 'BTC', 'USDT', 0.01,   0.00001),
    ('binance', 'ETHUSDT',   'ETH-USDT', 'ETH', 'USDT', 0.01,   0.0001),
    ('binance', 'SOLUSDT',   'SOL-USDT', 'SOL', 'USDT', 0.01,   0.001),
    ('binance', 'XRPUSDT',   'XRP-USDT', 'XRP', 'USDT', 0.0001, 0.1),
    ('kraken',  'XBT/USDT',  'BTC-USDT', 'BTC', 'USDT', 0.1,    0.00000001),
    ('kraken',  'ETH/USDT',  'ETH-USDT', 'ETH', 'USDT', 0.01,   0.00000001),
    ('kraken',  'SOL/USDT',  'SOL-USDT', 'SOL', 'USDT', 0.01,   0.00000001),
    ('kraken',  'XRP/USDT',  'XRP-USDT', 'XRP', 'USDT', 0.00001, 0.00000001))
WHERE (exchange, exchange_symbol) NOT IN (SELECT exchange, exchange_symbol FROM instruments);

-- Layer silver: validated (known instrument), deduplicated on (exchange, symbol, trade_id),
-- canonical symbol. ReplacingMergeTree + FINAL is the dedup of record; the view below
-- also keeps duplicates out at insert time so that gold never counts one (see gold).
CREATE TABLE IF NOT EXISTS silver_trades
(
    exchange         LowCardinality(String),
    symbol           LowCardinality(String)  COMMENT 'canonical BASE-QUOTE',
    exchange_symbol  LowCardinality(String),
    base_asset       LowCardinality(String),
    quote_asset      LowCardinality(String),
    trade_id         UInt64,
    price            Decimal(18, 8),
    quantity         Decimal(18, 8),
    quote_quantity   Decimal(18, 8),
    side             LowCardinality(String),
    is_buyer_maker   Bool,
    exchange_ts      DateTime64(6, 'UTC'),
    received_at      DateTime64(6, 'UTC'),
    ingested_at      DateTime64(6, 'UTC'),
    INDEX ingested_at_minmax ingested_at TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(exchange_ts)
ORDER BY (exchange, exchange_symbol, trade_id)
TTL toDateTime(exchange_ts) + INTERVAL {{retention_days}} DAY;

-- A trade enters silver once: duplicates inside one insert are dropped by LIMIT 1 BY (the
-- first delivery in arrival order stays), and redeliveries of trades already in silver by the
-- anti-join. The anti-join looks back one day of ingestion (the minmax index skips older
-- granules) so that its cost does not grow with the table. Exact for inserts serialized per
-- exchange (one handler writer per exchange, the feed contract) and redeliveries within a
-- day; beyond that silver FINAL still collapses the trade and the audit's gold-vs-silver
-- count check flags the window.
CREATE MATERIALIZED VIEW IF NOT EXISTS silver_trades_mv TO silver_trades AS
SELECT
    b.exchange        AS exchange,
    i.symbol          AS symbol,
    b.symbol          AS exchange_symbol,
    i.base_asset      AS base_asset,
    i.quote_asset     AS quote_asset,
    b.trade_id        AS trade_id,
    b.price           AS price,
    b.quantity        AS quantity,
    b.quote_quantity  AS quote_quantity,
    b.side            AS side,
    b.is_buyer_maker  AS is_buyer_maker,
    b.exchange_ts     AS exchange_ts,
    b.received_at     AS received_at,
    b.ingested_at     AS ingested_at
FROM bronze_trades AS b
INNER JOIN (SELECT * FROM instruments FINAL) AS i
    ON i.exchange = b.exchange AND i.exchange_symbol = b.symbol
WHERE (b.exchange, b.symbol, b.trade_id) NOT IN (
    SELECT exchange, exchange_symbol, trade_id FROM silver_trades
    WHERE ingested_at >= now64(6) - INTERVAL 1 DAY)
LIMIT 1 BY b.exchange, b.symbol, b.trade_id;
