-- Modify "subscriptions" table
ALTER TABLE "subscriptions" ADD COLUMN "discount_code" character varying NULL, ADD COLUMN "discount_percent_off" double precision NULL, ADD COLUMN "discount_amount_off" bigint NULL;
