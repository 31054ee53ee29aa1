--liquibase formatted sql

--changeset team:account-plan
ALTER TABLE accounts ADD COLUMN plan_id text REFERENCES plans (id);
--rollback ALTER TABLE accounts DROP COLUMN plan_id;
