-- Which of the tables in $tables still have a primary key (warehouses created before they were unkeyed).
select distinct table_name
from duckdb_constraints()
where constraint_type = 'PRIMARY KEY' and list_contains($tables, table_name)
order by table_name
