-- Move the rows of the keyed table set aside by rename_keyed_table.sql into the new, unkeyed {gold_table}.
insert into {gold_table} by name select * from {gold_table}_keyed;
drop table {gold_table}_keyed;
