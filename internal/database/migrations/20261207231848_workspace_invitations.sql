-- Modify "workspaces" table
ALTER TABLE "workspaces" ADD COLUMN "deleted_at" timestamptz NULL;
-- Create "invitations" table
CREATE TABLE "invitations" ("id" uuid NOT NULL, "create_time" timestamptz NOT NULL, "update_time" timestamptz NOT NULL, "email" character varying NOT NULL DEFAULT '', "user_id" character varying NOT NULL DEFAULT '', "role" character varying NOT NULL, "invited_by" character varying NOT NULL, "status" character varying NOT NULL DEFAULT 'pending', "expires_at" timestamptz NOT NULL, "responded_at" timestamptz NULL, "workspace_id" uuid NOT NULL, PRIMARY KEY ("id"), CONSTRAINT "invitations_workspaces_invitations" FOREIGN KEY ("workspace_id") REFERENCES "workspaces" ("id") ON UPDATE NO ACTION ON DELETE NO ACTION);
-- Create index "invitation_email_status" to table: "invitations"
CREATE INDEX "invitation_email_status" ON "invitations" ("email", "status");
-- Create index "invitation_user_id_status" to table: "invitations"
CREATE INDEX "invitation_user_id_status" ON "invitations" ("user_id", "status");
-- Create index "invitation_workspace_id_status" to table: "invitations"
CREATE INDEX "invitation_workspace_id_status" ON "invitations" ("workspace_id", "status");
