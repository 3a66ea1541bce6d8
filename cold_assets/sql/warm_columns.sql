-- The columns of a warm table, in table order, with the constant a plain DEFAULT fills in for
-- rows written before the column existed (parity treats it like cold's NULL for such rows).
SELECT name, type, if(default_kind = 'DEFAULT', default_expression, '')
FROM system.columns
WHERE database = currentDatabase() AND table = {table:String}
ORDER BY position
