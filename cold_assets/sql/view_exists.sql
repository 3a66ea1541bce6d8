-- Whether a federated view exists in the warm tier's database.
SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {view:String}
