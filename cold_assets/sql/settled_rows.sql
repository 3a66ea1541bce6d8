-- The rows of $source an append layer's closed hours are judged on: those ingested by the
-- settle line (later ones are in flight), and every row of the open hours from open_from on.
(SELECT * FROM $source
 WHERE ingested_at <= {settled:DateTime64(6, 'UTC')} OR $time_column >= {open_from:DateTime64(6, 'UTC')})
