-- The instruments a medallion knows (reference data operators add to), as silver joins them.
SELECT exchange, exchange_symbol, symbol, base_asset, quote_asset, tick_size, lot_size FROM instruments FINAL
ORDER BY exchange, exchange_symbol
