-- The number of rows a read query returns.
SELECT count() FROM ($query)
