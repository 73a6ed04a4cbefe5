ALTER TABLE "hosts" ADD COLUMN "cpu_busy_cores" real;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "memory_used_mb" integer;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "vmm_memory_mb" integer;--> statement-breakpoint
ALTER TABLE "hosts" ADD COLUMN "measured_at" timestamp (3) with time zone;