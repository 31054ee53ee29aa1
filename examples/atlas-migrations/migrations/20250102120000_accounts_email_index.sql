-- atlas:txmode none

-- Create index "accounts_email_key" to table: "accounts"
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "accounts_email_key" ON "accounts" ("email");
