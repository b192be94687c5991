-- Empty {gold_table} before a full rebuild (same transaction as the rebuild's inserts).
delete from {gold_table}
