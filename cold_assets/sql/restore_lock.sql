-- One restore at a time: the lock is this table, created by the restore (creating it again
-- fails) and dropped when it ends. Its comment names the holder: host, process, start.
CREATE TABLE $lock (holder String) ENGINE = Memory COMMENT $holder
