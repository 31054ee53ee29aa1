-- atlas:txtar

-- checks.sql --
-- The table must be empty: the sessions moved to the new store.
SELECT NOT EXISTS (SELECT 1 FROM "legacy_sessions") AS legacy_sessions_empty;

-- migration.sql --
-- Drop "legacy_sessions" table: its check above holds it to an empty table.
-- squawk-ignore ban-drop-table
DROP TABLE "legacy_sessions";

-- down.sql --
-- Create "legacy_sessions" table
CREATE TABLE "legacy_sessions" ("token" text NOT NULL, "account_id" bigint NOT NULL, PRIMARY KEY ("token"));
