-- runbook runs this file statement by statement, outside a transaction,
-- because CREATE INDEX CONCURRENTLY cannot run inside one.
ALTER TABLE customers ADD COLUMN display_name text;
CREATE INDEX CONCURRENTLY customers_display_name_idx ON customers (display_name);
