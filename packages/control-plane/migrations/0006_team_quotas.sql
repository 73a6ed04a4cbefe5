ALTER TABLE "teams" ADD COLUMN "max_sandboxes" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_vcpus" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_memory_mb" integer;--> statement-breakpoint
ALTER TABLE "teams" ADD COLUMN "max_disk_mb" integer;