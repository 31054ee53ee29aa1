--liquibase formatted sql

--changeset team:accounts
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
--rollback DROP TABLE accounts;

--changeset team:account-email
ALTER TABLE accounts ADD COLUMN email text;
--rollback ALTER TABLE accounts DROP COLUMN email;

--changeset team:account-email-index runInTransaction:false
CREATE UNIQUE INDEX CONCURRENTLY accounts_email ON accounts (email);
--rollback DROP INDEX CONCURRENTLY accounts_email;
