-- Create index "webhookevent_due_by_created" to table: "webhook_events"
CREATE INDEX "webhookevent_due_by_created" ON "webhook_events" ("created", "create_time") WHERE (next_attempt_at IS NOT NULL);
