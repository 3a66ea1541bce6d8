-- A restore's staging table for the trades of cold silver that order a gold bar's open and
-- close: (exchange_ts, trade_id) is the argMin/argMax key of the bar's states; the price
-- checks that cold silver's first and last trade are the bar's open and close; the
-- exchange_symbol completes silver's key, and the quantities make a bar of the trades
-- (restore_classify_bars.sql).
CREATE TABLE $stage
(
    exchange         String,
    symbol           String,
    exchange_symbol  String,
    exchange_ts      DateTime64(6, 'UTC'),
    trade_id         UInt64,
    price            Decimal(18, 8),
    quantity         Decimal(18, 8),
    quote_quantity   Decimal(18, 8)
)
ENGINE = MergeTree
ORDER BY tuple()
