-- Create "webhook_events" table
CREATE TABLE "webhook_events" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_event_id" character varying NOT NULL, "type" character varying NOT NULL, "api_version" character varying NOT NULL, "created" timestamptz NOT NULL, "livemode" boolean NOT NULL, "object_id" character varying NOT NULL DEFAULT '', "payload" bytea NOT NULL, "status" character varying NOT NULL DEFAULT 'received', "attempts" bigint NOT NULL DEFAULT 0, "last_error" character varying NULL, "processed_at" timestamptz NULL, "next_attempt_at" timestamptz NULL, "locked_until" timestamptz NULL, "workspace_id" uuid NULL, PRIMARY KEY ("id"));
-- Create index "webhook_events_stripe_event_id_key" to table: "webhook_events"
CREATE UNIQUE INDEX "webhook_events_stripe_event_id_key" ON "webhook_events" ("stripe_event_id");
-- Create index "webhookevent_create_time" to table: "webhook_events"
CREATE INDEX "webhookevent_create_time" ON "webhook_events" ("create_time");
-- Create index "webhookevent_status_next_attempt_at" to table: "webhook_events"
CREATE INDEX "webhookevent_status_next_attempt_at" ON "webhook_events" ("status", "next_attempt_at");
-- Create index "webhookevent_type" to table: "webhook_events"
CREATE INDEX "webhookevent_type" ON "webhook_events" ("type");
-- Create "workspaces" table
CREATE TABLE "workspaces" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "name" character varying NOT NULL, "stripe_customer_id" character varying NULL, "billing_version" bigint NOT NULL DEFAULT 0, PRIMARY KEY ("id"));
-- Create index "workspaces_stripe_customer_id_key" to table: "workspaces"
CREATE UNIQUE INDEX "workspaces_stripe_customer_id_key" ON "workspaces" ("stripe_customer_id");
-- Create "checkout_sessions" table
CREATE TABLE "checkout_sessions" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_session_id" character varying NULL, "request_key" character varying NULL, "mode" character varying NOT NULL, "lookup_key" character varying NOT NULL, "price_id" character varying NOT NULL, "plan" character varying NOT NULL, "quantity" bigint NOT NULL, "status" character varying NOT NULL DEFAULT 'creating', "url" character varying NULL, "created_by" character varying NOT NULL, "stripe_payment_intent_id" character varying NULL, "stripe_subscription_id" character varying NULL, "completed_at" timestamptz NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "checkout_sessions_workspaces_checkout_sessions" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "checkout_sessions_request_key_key" to table: "checkout_sessions"
CREATE UNIQUE INDEX "checkout_sessions_request_key_key" ON "checkout_sessions" ("request_key");
-- Create index "checkout_sessions_stripe_session_id_key" to table: "checkout_sessions"
CREATE UNIQUE INDEX "checkout_sessions_stripe_session_id_key" ON "checkout_sessions" ("stripe_session_id");
-- Create index "checkoutsession_workspace_id" to table: "checkout_sessions"
CREATE INDEX "checkoutsession_workspace_id" ON "checkout_sessions" ("workspace_id");
-- Create index "checkoutsession_workspace_id_create_time" to table: "checkout_sessions"
CREATE INDEX "checkoutsession_workspace_id_create_time" ON "checkout_sessions" ("workspace_id", "create_time");
-- Create "invoices" table
CREATE TABLE "invoices" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_invoice_id" character varying NOT NULL, "stripe_subscription_id" character varying NULL, "number" character varying NULL, "status" character varying NOT NULL, "payment_failed" boolean NOT NULL DEFAULT false, "amount_due" bigint NOT NULL, "amount_paid" bigint NOT NULL, "currency" character varying NOT NULL, "period_start" timestamptz NULL, "period_end" timestamptz NULL, "hosted_invoice_url" character varying NULL, "invoice_pdf" character varying NULL, "last_event_at" timestamptz NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "invoices_workspaces_invoices" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "invoice_workspace_id" to table: "invoices"
CREATE INDEX "invoice_workspace_id" ON "invoices" ("workspace_id");
-- Create index "invoice_workspace_id_create_time" to table: "invoices"
CREATE INDEX "invoice_workspace_id_create_time" ON "invoices" ("workspace_id", "create_time");
-- Create index "invoices_stripe_invoice_id_key" to table: "invoices"
CREATE UNIQUE INDEX "invoices_stripe_invoice_id_key" ON "invoices" ("stripe_invoice_id");
-- Create "users" table
CREATE TABLE "users" ("id" character varying NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "email" character varying NOT NULL DEFAULT '', "name" character varying NOT NULL DEFAULT '', PRIMARY KEY ("id"));
-- Create "memberships" table
CREATE TABLE "memberships" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "role" character varying NOT NULL, "user_id" character varying NOT NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "memberships_users_memberships" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION, CONSTRAINT "memberships_workspaces_memberships" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "membership_user_id_workspace_id" to table: "memberships"
CREATE UNIQUE INDEX "membership_user_id_workspace_id" ON "memberships" ("user_id", "workspace_id");
-- Create index "membership_workspace_id" to table: "memberships"
CREATE INDEX "membership_workspace_id" ON "memberships" ("workspace_id");
-- Create "payments" table
CREATE TABLE "payments" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_payment_intent_id" character varying NULL, "request_key" character varying NULL, "amount" bigint NOT NULL, "currency" character varying NOT NULL, "purpose" character varying NOT NULL, "status" character varying NOT NULL DEFAULT 'creating', "amount_refunded" bigint NOT NULL DEFAULT 0, "created_by" character varying NOT NULL, "last_error_code" character varying NULL, "last_event_at" timestamptz NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "payments_workspaces_payments" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "payment_workspace_id" to table: "payments"
CREATE INDEX "payment_workspace_id" ON "payments" ("workspace_id");
-- Create index "payment_workspace_id_create_time" to table: "payments"
CREATE INDEX "payment_workspace_id_create_time" ON "payments" ("workspace_id", "create_time");
-- Create index "payments_request_key_key" to table: "payments"
CREATE UNIQUE INDEX "payments_request_key_key" ON "payments" ("request_key");
-- Create index "payments_stripe_payment_intent_id_key" to table: "payments"
CREATE UNIQUE INDEX "payments_stripe_payment_intent_id_key" ON "payments" ("stripe_payment_intent_id");
-- Create "refunds" table
CREATE TABLE "refunds" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_refund_id" character varying NULL, "request_key" character varying NULL, "amount" bigint NOT NULL, "currency" character varying NOT NULL, "reason" character varying NOT NULL, "reason_detail" character varying NULL, "status" character varying NOT NULL DEFAULT 'creating', "refunded_by" character varying NOT NULL, "failure_reason" character varying NULL, "last_event_at" timestamptz NULL, "payment_id" uuid NOT NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "refunds_payments_refunds" FOREIGN KEY ("payment_id") REFERENCES "payments" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION, CONSTRAINT "refunds_workspaces_refunds" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "refund_payment_id" to table: "refunds"
CREATE INDEX "refund_payment_id" ON "refunds" ("payment_id");
-- Create index "refund_workspace_id" to table: "refunds"
CREATE INDEX "refund_workspace_id" ON "refunds" ("workspace_id");
-- Create index "refunds_request_key_key" to table: "refunds"
CREATE UNIQUE INDEX "refunds_request_key_key" ON "refunds" ("request_key");
-- Create index "refunds_stripe_refund_id_key" to table: "refunds"
CREATE UNIQUE INDEX "refunds_stripe_refund_id_key" ON "refunds" ("stripe_refund_id");
-- Create "subscriptions" table
CREATE TABLE "subscriptions" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "stripe_subscription_id" character varying NULL, "request_key" character varying NULL, "status" character varying NOT NULL DEFAULT 'creating', "plan" character varying NOT NULL, "lookup_key" character varying NOT NULL, "price_id" character varying NOT NULL, "stripe_item_id" character varying NULL, "quantity" bigint NOT NULL DEFAULT 1, "features" jsonb NULL, "critical_features" jsonb NULL, "current_period_start" timestamptz NULL, "current_period_end" timestamptz NULL, "cancel_at_period_end" boolean NOT NULL DEFAULT false, "canceled_at" timestamptz NULL, "trial_end" timestamptz NULL, "last_event_at" timestamptz NULL, "last_event_id" character varying NULL, "created_by" character varying NOT NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "subscriptions_workspaces_subscriptions" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "subscription_workspace_id" to table: "subscriptions"
CREATE INDEX "subscription_workspace_id" ON "subscriptions" ("workspace_id");
-- Create index "subscription_workspace_id_create_time" to table: "subscriptions"
CREATE INDEX "subscription_workspace_id_create_time" ON "subscriptions" ("workspace_id", "create_time");
-- Create index "subscriptions_request_key_key" to table: "subscriptions"
CREATE UNIQUE INDEX "subscriptions_request_key_key" ON "subscriptions" ("request_key");
-- Create index "subscriptions_stripe_subscription_id_key" to table: "subscriptions"
CREATE UNIQUE INDEX "subscriptions_stripe_subscription_id_key" ON "subscriptions" ("stripe_subscription_id");
