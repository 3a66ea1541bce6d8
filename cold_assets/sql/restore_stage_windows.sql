-- A restore's staging table for the gold windows whose warm bar may lack cold's trades
-- (restore_classify_bars.sql), and whether cold's bar merges into it.
CREATE TABLE $stage
(
    exchange      String,
    symbol        String,
    window_start  DateTime64(6, 'UTC'),
    mergeable     Bool,
    warm_trades   UInt64,
    cold_trades   UInt64
)
ENGINE = MergeTree
ORDER BY tuple()
