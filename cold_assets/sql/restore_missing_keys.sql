-- The rows of a deduplicated layer (silver) cold holds for [range_start, range_end) whose key
-- warm does not hold: warm's own row of a key stays as it is.
INSERT INTO $added ($columns)
SELECT $columns
FROM $cold_rows
WHERE ($key) NOT IN (
    SELECT $key
    FROM $warm
    WHERE $time_column >= {range_start:DateTime64(6, 'UTC')} AND $time_column < {range_end:DateTime64(6, 'UTC')}
)
