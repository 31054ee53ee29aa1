-- runbook runs this file statement by statement, outside a transaction,
-- because CREATE INDEX CONCURRENTLY cannot run inside one. Each statement
-- can run again, so a rerun after a failure part-way finishes the job.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS display_name text;
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_display_name_idx ON customers (display_name);
