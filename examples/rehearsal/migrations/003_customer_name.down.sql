DROP INDEX CONCURRENTLY customers_display_name_idx;
ALTER TABLE customers DROP COLUMN display_name;
