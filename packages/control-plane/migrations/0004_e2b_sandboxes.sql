ALTER TABLE "sandboxes" ADD COLUMN "envd_access_token" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "traffic_access_token" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "secure" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "allow_public_traffic" boolean DEFAULT true NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "end_at" timestamp (3) with time zone;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "auto_pause" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "auto_resume" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "metadata" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "sandboxes" ADD COLUMN "network" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
CREATE INDEX "sandboxes_running_end_at" ON "sandboxes" USING btree ("end_at") WHERE "sandboxes"."status" = 'running' and "sandboxes"."end_at" is not null;