-- The rows of an append layer cold holds for [range_start, range_end) and warm does not, each
-- as many times as cold holds it more often than warm (raw keeps a feed's redeliveries: a
-- row is a multiset member, not a key).
INSERT INTO $added ($columns)
SELECT $columns
FROM (SELECT $columns, count() AS cold_copies FROM $cold_rows GROUP BY $columns) AS c
LEFT JOIN (
    SELECT $columns, count() AS warm_copies
    FROM $warm
    WHERE $time_column >= {range_start:DateTime64(6, 'UTC')} AND $time_column < {range_end:DateTime64(6, 'UTC')}
    GROUP BY $columns
) AS w USING ($columns)
ARRAY JOIN range(toUInt64(greatest(toInt64(cold_copies) - toInt64(warm_copies), 0))) AS copy
SETTINGS join_use_nulls = 0
