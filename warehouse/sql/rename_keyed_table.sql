-- Set {gold_table} aside (it has a primary key it no longer should); copy_keyed_table.sql moves its rows
-- into the unkeyed table the mart's create.sql then creates. {gold_table} is a whitelisted identifier.
alter table {gold_table} rename to {gold_table}_keyed
