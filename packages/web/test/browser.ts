/** What the dashboard's browser tests share: the system chromium, the build, screenshots. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

const web = resolve(import.meta.dirname, "..");
export const out = join(web, "test-output");
export const CHROMIUM = process.env.WRENN_CHROMIUM ?? "/usr/bin/chromium";

/** Why `what` cannot run here (said loudly), or false. */
export function chromiumMissing(what: string): string | false {
  if (existsSync(CHROMIUM)) return false;
  console.warn(`\n!!! SKIPPING ${what}: no ${CHROMIUM} (apt-get install chromium)\n`);
  return `no ${CHROMIUM}`;
}

/** The build the control plane serves; made here when a run starts without one. */
export function ensureBuild(): void {
  if (existsSync(join(web, "dist", "index.html"))) return;
  const r = spawnSync("npm", ["run", "build", "-w", "@wrenn/web"], {
    cwd: resolve(web, "../.."),
    stdio: "inherit",
  });
  assert.equal(r.status, 0, "the dashboard builds");
}

/** Debian's chromium, headless, on a fresh profile (no browser download). */
export async function launch(profile: string): Promise<BrowserContext> {
  await mkdir(out, { recursive: true });
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    acceptDownloads: true,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
}
