-- Layer gold: OHLCV bars per (exchange, canonical symbol, window), one table per window.
-- TEMPLATE: applied once per gold window; {{window}} is the table suffix (1m, 5m, ...) and
-- {{interval}} the ClickHouse interval (1 MINUTE, ...). The list of windows lives in
-- cold_assets/tables.py (GOLD_WINDOWS).
--
-- Fed from silver_trades' insert stream, which carries each trade once (see silver), so
-- no duplicate delivery is counted twice. Bars are aggregate states merged at read time:
-- read with GROUP BY and the -Merge combinators (cold_assets/sql/read_gold.sql).
CREATE TABLE IF NOT EXISTS gold_ohlcv_{{window}}
(
    exchange      LowCardinality(String),
    symbol        LowCardinality(String),
    window_start  DateTime64(6, 'UTC'),
    open          AggregateFunction(argMin, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), UInt64)),
    high          SimpleAggregateFunction(max, Decimal(18, 8)),
    low           SimpleAggregateFunction(min, Decimal(18, 8)),
    close         AggregateFunction(argMax, Decimal(18, 8), Tuple(DateTime64(6, 'UTC'), UInt64)),
    volume        SimpleAggregateFunction(sum, Decimal(38, 8)),
    quote_volume  SimpleAggregateFunction(sum, Decimal(38, 8)),
    trade_count   SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, symbol, window_start)
TTL toDateTime(window_start) + INTERVAL {{retention_days}} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS gold_ohlcv_{{window}}_mv TO gold_ohlcv_{{window}} AS
SELECT
    exchange,
    symbol,
    toDateTime64(toStartOfInterval(exchange_ts, INTERVAL {{interval}}, 'UTC'), 6, 'UTC') AS window_start,
    argMinState(price, (exchange_ts, trade_id))                     AS open,
    max(price)                                                      AS high,
    min(price)                                                      AS low,
    argMaxState(price, (exchange_ts, trade_id))                     AS close,
    toDecimal128(sum(quantity), 8)                                  AS volume,
    toDecimal128(sum(quote_quantity), 8)                            AS quote_volume,
    count()                                                         AS trade_count
FROM silver_trades
GROUP BY exchange, symbol, window_start;
