-- A restore's staging table for the gold windows whose warm bar lost trades
-- (restore_classify_bars.sql), whether cold's bar merges into it, and the trade counts of
-- warm's bar, cold's and the two tiers' silver.
CREATE TABLE $stage
(
    exchange      String,
    symbol        String,
    window_start  DateTime64(6, 'UTC'),
    mergeable     Bool,
    warm_trades   UInt64,
    cold_trades   UInt64,
    silver_trades UInt64
)
ENGINE = MergeTree
ORDER BY tuple()
