/**
 * The dashboard's sign-in edge cases in a real browser, against a real
 * control plane (no VMs needed): a revoked session is a message on the
 * sign-in form, never a blank page; sign-in works from the keyboard alone;
 * the team switcher changes the team the API sees.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHarness } from "../../control-plane/test/harness.ts";
import { chromiumMissing, ensureBuild, launch, shot } from "./browser.ts";

test(
  "expired session, keyboard sign-in and the team switcher",
  { skip: chromiumMissing("the dashboard session test"), timeout: 180_000 },
  async () => {
    ensureBuild();
    const h = await startHarness("pglite", { agents: 1 });
    const profile = await mkdtemp(join(tmpdir(), "wrenn-chromium-"));
    const context = await launch(profile);
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      const email = `kb-${Date.now()}@example.com`;
      const signup = await h.api("/v1/auth/signup", {
        method: "POST",
        key: null,
        json: { email, password: "keyboard only 1" },
      });
      assert.equal(signup.status, 201);

      // Keyboard only: Tab from the tabs to the fields, Enter submits.
      await page.goto(`${h.cp.url}/dashboard/sandboxes`);
      await page.getByRole("tab", { name: "Sign in" }).focus();
      await page.keyboard.press("Tab"); // "Sign up" tab
      await page.keyboard.press("Tab");
      await page.keyboard.type(email);
      await page.keyboard.press("Tab");
      await page.keyboard.type("keyboard only 1");
      await page.keyboard.press("Enter");
      await page.getByRole("heading", { name: "Sandboxes" }).waitFor({ timeout: 10_000 });

      // A second team: the switcher appears and the API answers for the chosen team.
      await page.getByRole("link", { name: "Members", exact: true }).click();
      await page.getByLabel("team name").fill("second team");
      await page.getByRole("button", { name: "Create team" }).click();
      const switcher = page.getByLabel("team", { exact: true });
      await switcher.waitFor({ timeout: 10_000 });
      const options = await switcher.locator("option").allTextContents();
      assert.equal(options.length, 2, options.join(", "));
      const second = await switcher
        .locator("option", { hasText: "second team" })
        .getAttribute("value");
      await switcher.selectOption(second ?? "");
      await page.getByRole("heading", { name: "Sandboxes" }).waitFor();
      assert.equal(await page.evaluate(() => localStorage.getItem("wrenn.team")), second);
      await shot(page, "20-team-switcher");

      // The session is revoked behind the page's back (a bad token is what the API sees).
      await page.evaluate(() => localStorage.setItem("wrenn.session", "expired.session.token"));
      await page.getByRole("link", { name: "Templates", exact: true }).click();
      await page
        .getByText("Your session expired or was revoked: sign in again.")
        .waitFor({ timeout: 10_000 });
      await page.getByRole("tab", { name: "Sign in" }).waitFor();
      await shot(page, "21-session-expired");
      assert.deepEqual(errors, [], "no uncaught errors in the page");
    } finally {
      await context.close();
      await h.close();
      await rm(profile, { recursive: true, force: true });
    }
  },
);
