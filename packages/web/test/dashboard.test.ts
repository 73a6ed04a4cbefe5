/**
 * The dashboard in a real browser (Debian's chromium through playwright-core)
 * against a real control plane, a real host agent and QEMU VMs: sign-up, a
 * sandbox's terminal, files, pause and resume, snapshots, the admin page and
 * the /test lifecycle page. Screenshots of each page go to test-output/.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { startPlatform } from "../../control-plane/test/dashboard-platform.ts";
import { realAgentSkipReason } from "../../control-plane/test/harness.ts";
import { chromiumMissing, ensureBuild, launch, shot } from "./browser.ts";

function skipReason(): string | false {
  return (
    chromiumMissing("the dashboard browser test") ||
    realAgentSkipReason("the dashboard browser test")
  );
}

/** Milliseconds from a click on a nav link to the page's content being there. */
async function timedNav(page: Page, link: string, ready: string): Promise<number> {
  const t0 = performance.now();
  await page.getByRole("navigation").getByRole("link", { name: link, exact: true }).click();
  await page.locator(ready).first().waitFor({ timeout: 10_000 });
  return Math.round(performance.now() - t0);
}

async function terminalText(page: Page): Promise<string> {
  return (await page.locator(".xterm-rows").textContent()) ?? "";
}

async function waitTerminal(page: Page, text: string, timeout = 60_000): Promise<void> {
  // A string: this runs in the page, which the Node-side typecheck knows nothing of.
  await page.waitForFunction(
    `(document.querySelector(".xterm-rows")?.textContent ?? "").includes(${JSON.stringify(text)})`,
    undefined,
    { timeout },
  );
}

async function typeInTerminal(page: Page, text: string): Promise<void> {
  await page.locator(".xterm-box").click();
  await page.keyboard.type(text);
  await page.keyboard.press("Enter");
}

test(
  "the dashboard drives a real platform in a real browser",
  { skip: skipReason(), timeout: 1_500_000 },
  async () => {
    ensureBuild();
    const profile = await mkdtemp(join(tmpdir(), "wrenn-chromium-"));
    const p = await startPlatform("wdb");
    const { h } = p;
    const base = h.cp.url;
    const timings: Record<string, number> = {};
    const context = await launch(profile);
    const errors: string[] = [];
    const page = context.pages()[0] ?? (await context.newPage());
    let failure: unknown;
    try {
      page.on("pageerror", (e) => errors.push(e.message));
      page.on("dialog", (d) => void d.accept());

      // Sign-in: a wrong password is a message, then sign up a new (non-admin) user.
      await page.goto(base);
      await page.getByRole("tab", { name: "Sign in" }).waitFor();
      await page.getByLabel("Email").fill("nobody@example.com");
      await page.getByLabel("Password").fill("wrong-password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").filter({ hasText: "wrong email or password" }).waitFor();
      await shot(page, "01-login-error");
      const email = `member-${randomBytes(3).toString("hex")}@example.com`;
      await page.getByRole("tab", { name: "Sign up" }).click();
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill("member password 1");
      await page.getByRole("button", { name: "Create account" }).click();
      await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
      assert.equal(new URL(page.url()).pathname, "/dashboard/sandboxes");
      // A member is no platform admin: no Admin link, and the page says so.
      assert.equal(await page.getByRole("link", { name: "Admin", exact: true }).count(), 0);

      // Create a sandbox from the form, with a metadata row.
      await page.getByRole("button", { name: "New sandbox" }).click();
      await page.getByRole("button", { name: "Add metadata" }).click();
      await page.getByLabel("metadata key 1").fill("owner");
      await page.getByLabel("metadata value 1").fill("ui-test");
      await shot(page, "02-create-form");
      const t0 = performance.now();
      await page.getByRole("button", { name: "Create", exact: true }).click();
      await page.waitForURL(/\/dashboard\/sandboxes\/[a-z0-9]+$/, { timeout: 600_000 });
      const id = page.url().split("/").at(-1) ?? "";
      await page.locator(".card-head .status-running").waitFor({ timeout: 60_000 });
      timings.create_ms = Math.round(performance.now() - t0);
      await page.locator(".facts .label").filter({ hasText: "owner=ui-test" }).waitFor();
      const memberToken = (
        (await (
          await fetch(`${base}/v1/auth/login`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ email, password: "member password 1" }),
          })
        ).json()) as { token: string }
      ).token;
      const created = (await (
        await fetch(`${base}/v1/sandboxes/${id}`, {
          headers: { authorization: `Bearer ${memberToken}` },
        })
      ).json()) as { metadata: Record<string, string>; end_at: string | null };
      assert.deepEqual(created.metadata, { owner: "ui-test" });
      assert.equal(created.end_at, null);

      // The terminal: a real PTY.
      await page.locator('[data-terminal-state="connected"]').waitFor({ timeout: 60_000 });
      await typeInTerminal(page, "echo hi-$((20+22)); export MARK=kept");
      await waitTerminal(page, "hi-42");
      await shot(page, "03-terminal");

      // Pause and resume: the same shell answers with its variable.
      await page.getByRole("button", { name: "Pause" }).click();
      await page.locator(".card-head .status-paused").waitFor({ timeout: 120_000 });
      await page.locator('[data-terminal-state="waiting"]').waitFor();
      await page.getByRole("button", { name: "Resume" }).click();
      await page.locator(".card-head .status-running").waitFor({ timeout: 120_000 });
      await page.locator('[data-terminal-state="connected"]').waitFor({ timeout: 60_000 });
      // The reattach cleared the screen and the agent replayed what the shell printed.
      await waitTerminal(page, "hi-42", 10_000);
      await typeInTerminal(page, "echo resumed-$MARK");
      await waitTerminal(page, "resumed-kept");

      // A reload reattaches to the same shell too, and shows what was on screen.
      await page.reload();
      await page.locator('[data-terminal-state="connected"]').waitFor({ timeout: 60_000 });
      await waitTerminal(page, "resumed-kept", 10_000);
      assert.match(await terminalText(page), /hi-42.*resumed-kept/s, "the screen in order");
      await shot(page, "03b-terminal-after-reload");
      await typeInTerminal(page, "echo reloaded-$MARK");
      await waitTerminal(page, "reloaded-kept");
      assert.doesNotMatch(await terminalText(page), /exited/);

      // Files: upload with progress, download back byte-identical, mkdir, delete.
      await page.getByRole("tab", { name: "Files" }).click();
      await page.locator("table.files").waitFor({ timeout: 30_000 });
      const local = join(profile, "payload.bin");
      const payload = randomBytes(3 * 1024 * 1024 + 17);
      await writeFile(local, payload);
      await page.getByLabel("upload").setInputFiles(local);
      await page.locator('tr[data-file="payload.bin"]').waitFor({ timeout: 120_000 });
      const download = page.waitForEvent("download", { timeout: 120_000 });
      await page
        .locator('tr[data-file="payload.bin"]')
        .getByRole("button", { name: "Download" })
        .click();
      const saved = join(profile, "downloaded.bin");
      await (await download).saveAs(saved);
      assert.ok(
        Buffer.compare(await readFile(saved), payload) === 0,
        "the download is byte-identical",
      );
      await page.getByLabel("new folder").fill("made-by-ui");
      await page.getByRole("button", { name: "Create folder" }).click();
      await page.locator('tr[data-file="made-by-ui"]').waitFor();
      await shot(page, "04-files");
      await page
        .locator('tr[data-file="made-by-ui"]')
        .getByRole("button", { name: "Delete" })
        .click();
      await page.locator('tr[data-file="made-by-ui"]').waitFor({ state: "detached" });

      // Exec panel with history.
      await page.getByRole("tab", { name: "Exec" }).click();
      await page.getByLabel("command").fill("echo exec-$((6*7))");
      await page.getByRole("button", { name: "Run" }).click();
      await page
        .getByTestId("exec-stdout")
        .filter({ hasText: "exec-42" })
        .waitFor({ timeout: 60_000 });
      await page.getByRole("button", { name: "echo exec-$((6*7))" }).waitFor();
      await shot(page, "05-exec");

      // Metrics: charts, or the error where the chart would be; never a blank page.
      await page.getByRole("tab", { name: "Metrics" }).click();
      await page
        .locator(".spark, [role=alert], .card p.muted")
        .first()
        .waitFor({ timeout: 30_000 });
      await page.waitForTimeout(6000);
      await shot(page, "06-metrics");

      // The guest's log: its kernel's ring buffer.
      // envd writes nothing to the console per request (a TCG guest pays ≈ 10 µs a byte): a root line.
      const wrote = await fetch(`${base}/v1/sandboxes/${id}/exec`, {
        method: "POST",
        headers: { authorization: `Bearer ${memberToken}`, "content-type": "application/json" },
        body: JSON.stringify({
          cmd: "sh",
          args: ["-c", "echo console-check-$((6*7)) > /dev/console"],
          user: "root",
        }),
      });
      assert.equal(((await wrote.json()) as { exit_code: number }).exit_code, 0);
      await page.getByRole("tab", { name: "Log", exact: true }).click();
      // The console as the host agent keeps it (live), then the kernel's own log.
      await page
        .getByTestId("console-log")
        .filter({ hasText: "console-check-42" })
        .waitFor({ timeout: 30_000 });
      await page
        .getByTestId("guest-log")
        .filter({ hasText: "Linux version" })
        .waitFor({ timeout: 60_000 });
      await shot(page, "06b-log");

      // Snapshot to a template, then a sandbox from it that has the uploaded file.
      await page.getByLabel("template name").fill("ui-snap");
      await page.getByRole("button", { name: "Snapshot to template" }).click();
      await page.getByText("template ui-snap created").waitFor({ timeout: 600_000 });
      timings.templates_nav_ms = await timedNav(page, "Templates", 'tr[data-template="ui-snap"]');
      await shot(page, "07-templates");
      await page
        .locator('tr[data-template="ui-snap"]')
        .getByRole("button", { name: "Create sandbox" })
        .click();
      await page.getByRole("button", { name: "Create", exact: true }).click();
      await page.waitForURL(
        (u) => /\/dashboard\/sandboxes\/[a-z0-9]+$/.test(u.pathname) && !u.pathname.endsWith(id),
        {
          timeout: 600_000,
        },
      );
      const childId = page.url().split("/").at(-1) ?? "";
      await page.getByRole("tab", { name: "Exec" }).click();
      await page.getByLabel("command").fill("md5sum /home/user/payload.bin | cut -c1-32");
      await page.getByRole("button", { name: "Run" }).click();
      const md5 = (await import("node:crypto")).createHash("md5").update(payload).digest("hex");
      await page.getByTestId("exec-stdout").filter({ hasText: md5 }).waitFor({ timeout: 120_000 });

      // The list shows both, live; destroy the child from the list.
      timings.sandboxes_nav_ms = await timedNav(page, "Sandboxes", `tr[data-sandbox="${childId}"]`);
      await page.locator(`tr[data-sandbox="${id}"]`).waitFor();
      // Time left: a /v1 sandbox has no end time, so the idle timeout it pauses after.
      const childRow = page.locator(`tr[data-sandbox="${childId}"]`);
      assert.equal(await childRow.locator("[data-time-left]").textContent(), "idle 5m");
      assert.equal(
        await page.locator(`tr[data-sandbox="${id}"] [data-time-left]`).textContent(),
        "—",
        "the snapshot left the first one paused",
      );
      await page
        .locator(`tr[data-sandbox="${id}"] .label`)
        .filter({ hasText: "owner=ui-test" })
        .waitFor();
      await page.getByLabel("filter").fill("owner=ui");
      await childRow.waitFor({ state: "detached" });
      await page.getByLabel("filter").fill("");
      await shot(page, "08-sandboxes");
      await page
        .locator(`tr[data-sandbox="${childId}"]`)
        .getByRole("button", { name: "Destroy" })
        .click();
      await page
        .locator(`tr[data-sandbox="${childId}"]`)
        .waitFor({ state: "detached", timeout: 120_000 });

      // API keys: shown once.
      timings.keys_nav_ms = await timedNav(page, "API keys", "form[aria-label='create API key']");
      await page.getByLabel("key name").fill("ci");
      await page.getByRole("button", { name: "Create key" }).click();
      assert.match(
        (await page.getByTestId("new-key").textContent()) ?? "",
        /^[a-z0-9]+_[0-9a-f]{20,}$/,
      );
      await shot(page, "09-keys");
      timings.members_nav_ms = await timedNav(page, "Members", "form[aria-label='add member']");

      // The admin page is not for members.
      await page.goto(`${base}/dashboard/admin`);
      await page.getByText("This page is for platform admins only.").waitFor();
      await shot(page, "10-admin-denied");

      // Phone width and dark scheme stay readable.
      await page.setViewportSize({ width: 390, height: 844 });
      await page.emulateMedia({ colorScheme: "dark" });
      await page.goto(`${base}/dashboard/sandboxes/${id}`);
      // The snapshot left it paused: resume it from the phone, and the terminal comes back.
      await page.locator('[data-terminal-state="waiting"]').waitFor({ timeout: 30_000 });
      await page.getByRole("button", { name: "Resume" }).click();
      await page.locator('[data-terminal-state="connected"]').waitFor({ timeout: 120_000 });
      // The same shell after the snapshot's pause: its screen comes back.
      await waitTerminal(page, "reloaded-kept", 15_000);
      await shot(page, "11-phone-dark");
      // The list at phone width: each sandbox a block, nothing wider than the screen.
      await page.goto(`${base}/dashboard/sandboxes`);
      await page.locator(`tr[data-sandbox="${id}"] [data-time-left]`).waitFor();
      await page
        .locator(`tr[data-sandbox="${id}"] [data-time-left]`)
        .filter({ hasText: "idle 5m" })
        .waitFor({ timeout: 10_000 });
      assert.ok(
        await page
          .locator(`tr[data-sandbox="${id}"]`)
          .getByRole("button", { name: "Pause" })
          .isVisible(),
      );
      const overflow = (await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      )) as number;
      assert.ok(overflow <= 0, `the list is ${overflow} px wider than a phone`);
      await shot(page, "11b-phone-list");
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.emulateMedia({ colorScheme: "light" });

      // Sign out; the admin signs in and sees the member's template.
      await page.getByRole("button", { name: "Sign out" }).click();
      const adminEmail = (
        (await (await h.api("/v1/me")).json()) as { user: { email: string } | null }
      ).user?.email;
      await page.getByLabel("Email").fill(adminEmail ?? "");
      await page.getByLabel("Password").fill("correct horse battery");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("link", { name: "Admin", exact: true }).waitFor();
      timings.admin_nav_ms = await timedNav(page, "Admin", 'tr[data-template="ui-snap"]');
      // The host's measured use (what admission counts) and its warm sandboxes.
      await page
        .getByTestId("host-usage")
        .filter({ hasText: /^\d+\.\d cores busy · \d+\.\d GiB used · \d+ warm$/ })
        .waitFor();
      await shot(page, "12-admin");

      // /test drives the whole lifecycle on one screen.
      await page.goto(`${base}/test`);
      await page.getByRole("heading", { name: "Sandbox lifecycle test" }).waitFor();
      await page.getByRole("button", { name: "Create", exact: true }).click();
      const row = page.locator("tr[data-sandbox]").first();
      await page
        .getByTestId("test-log")
        .getByText(/create from minimal: ok/)
        .waitFor({ timeout: 600_000 });
      const testId = await row.getAttribute("data-sandbox");
      const r = page.locator(`tr[data-sandbox="${testId}"]`);
      await r.locator(".status-running").waitFor({ timeout: 30_000 });
      await page.getByLabel("command").fill("echo lifecycle-ok");
      await r.getByRole("button", { name: "Exec" }).click();
      await page
        .getByTestId("test-output")
        .filter({ hasText: "lifecycle-ok" })
        .waitFor({ timeout: 60_000 });
      await r.getByRole("button", { name: "Pause" }).click();
      await r.locator(".status-paused").waitFor({ timeout: 120_000 });
      await r.getByRole("button", { name: "Resume" }).click();
      await r.locator(".status-running").waitFor({ timeout: 120_000 });
      await page.getByLabel("snapshot name").fill("test-page-snap");
      await r.getByRole("button", { name: "Snapshot" }).click();
      await page.locator('tr[data-template="test-page-snap"]').waitFor({ timeout: 600_000 });
      await shot(page, "13-test-page");
      await page
        .locator('tr[data-template="test-page-snap"]')
        .getByRole("button", { name: "Delete" })
        .click();
      await page
        .locator('tr[data-template="test-page-snap"]')
        .waitFor({ state: "detached", timeout: 60_000 });
      await r.getByRole("button", { name: "Destroy" }).click();
      await r.waitFor({ state: "detached", timeout: 120_000 });
      const failures = await page.getByTestId("test-log").locator(".error-text").count();
      assert.equal(failures, 0, (await page.getByTestId("test-log").textContent()) ?? "");

      // The member's own template, removed with the member's session.
      const login = (await (
        await fetch(`${base}/v1/auth/login`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ email, password: "member password 1" }),
        })
      ).json()) as { token: string };
      const delSnap = await fetch(`${base}/v1/snapshots/ui-snap`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${login.token}` },
      });
      assert.equal(delSnap.status, 204);
      const left = await fetch(`${base}/v1/sandboxes/${id}`, {
        method: "DELETE",
        headers: { authorization: `Bearer ${login.token}` },
      });
      assert.equal(left.status, 204);
      assert.deepEqual(errors, [], "no uncaught errors in the page");
      console.log(`dashboard timings (ms): ${JSON.stringify(timings)}`);
      // The target is ≤ 1 s; a 2-core machine running TCG guests beside the browser
      // sometimes stalls one click, so the median must meet it and none may be far off.
      const navs = Object.entries(timings).filter(([k]) => k.endsWith("_nav_ms"));
      const sorted = navs.map(([, v]) => v).sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
      assert.ok(median <= 1000, `median nav ${median} ms ≤ 1 s (${JSON.stringify(timings)})`);
      for (const [k, v] of navs) assert.ok(v <= 3000, `${k} ${v} ms ≤ 3 s`);
    } catch (err) {
      failure = err;
      await shot(page, "failure").catch(() => {});
    } finally {
      await context.close().catch(() => {});
      // A cleanup failure (a leak) fails the test too, but never hides the first error.
      await p.close().catch((err: unknown) => {
        if (failure) console.error("cleanup failed as well:", err);
        else failure = err;
      });
      await rm(profile, { recursive: true, force: true });
    }
    if (failure) throw failure;
  },
);
