-- The windows whose warm bar lost trades (or counts trades silver no longer holds) and that
-- could not be proven to merge with cold's bar (restore_classify_bars.sql): adding cold's
-- states could count a trade twice, so the restore names them and leaves them.
SELECT exchange, symbol, toString(window_start), warm_trades, cold_trades, silver_trades
FROM $windows
WHERE NOT mergeable
ORDER BY exchange, symbol, window_start
