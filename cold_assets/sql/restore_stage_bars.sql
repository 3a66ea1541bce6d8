-- A restore's staging table for a gold table's finalized bars as cold holds them.
CREATE TABLE $stage
(
    exchange      String,
    symbol        String,
    window_start  DateTime64(6, 'UTC'),
    open          Decimal(18, 8),
    high          Decimal(18, 8),
    low           Decimal(18, 8),
    close         Decimal(18, 8),
    volume        Decimal(38, 8),
    quote_volume  Decimal(38, 8),
    trade_count   UInt64
)
ENGINE = MergeTree
ORDER BY tuple()
