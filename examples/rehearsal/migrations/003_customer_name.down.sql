DROP INDEX CONCURRENTLY IF EXISTS customers_display_name_idx;
ALTER TABLE customers DROP COLUMN IF EXISTS display_name;
