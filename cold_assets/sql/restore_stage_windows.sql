-- A restore's staging table for a list of gold windows (those whose bars merge with cold's).
CREATE TABLE $stage
(
    exchange      String,
    symbol        String,
    window_start  DateTime64(6, 'UTC')
)
ENGINE = MergeTree
ORDER BY tuple()
