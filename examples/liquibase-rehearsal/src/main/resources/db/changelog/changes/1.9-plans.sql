--liquibase formatted sql

--changeset team:plans
CREATE TABLE plans (
    id text PRIMARY KEY,
    monthly_cents integer NOT NULL
);
/* liquibase rollback
DROP TABLE plans;
*/

--changeset team:plans-seed
INSERT INTO plans VALUES ('free', 0), ('team', 2900);
--rollback DELETE FROM plans WHERE id IN ('free', 'team');
