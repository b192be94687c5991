-- Remove the rows of {gold_table} that are about to be recomputed (same transaction as the insert).
delete from {gold_table} as mart
using refresh_days as refresh
where mart.app = refresh.app and mart.source = refresh.source and mart.day = refresh.day
