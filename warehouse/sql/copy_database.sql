-- The whole warehouse into a fresh file (warehouse.gold.rewrite_file): schema, keys and rows.
copy from database source to target
