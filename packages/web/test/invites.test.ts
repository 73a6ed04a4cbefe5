/**
 * Invites in a real browser against a real control plane with sign-up closed
 * (the default): an owner makes an invite on the members page and copies its
 * link; a second browser opens the link, signs up and lands in that team; a
 * revoked or used invite is a clear message on the sign-up form. No VMs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { startHarness } from "../../control-plane/test/harness.ts";
import { chromiumMissing, ensureBuild, launch, shot } from "./browser.ts";

const LINK = /^http:\/\/127\.0\.0\.1:\d+\/dashboard\/signup#invite=([A-Za-z0-9_%-]+)$/;

async function firstPage(context: BrowserContext, errors: string[]): Promise<Page> {
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => void d.accept());
  return page;
}

async function signUp(page: Page, email: string): Promise<void> {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("invited password 1");
  await page.getByRole("button", { name: "Create account" }).click();
}

test(
  "an owner invites from the members page; the link signs a new user up into that team",
  { skip: chromiumMissing("the dashboard invites test"), timeout: 240_000 },
  async () => {
    ensureBuild();
    // Sign-up closed, as a platform runs by default: only an invite lets someone in.
    const h = await startHarness("pglite", { agents: 0, openSignup: false });
    const profiles = [
      await mkdtemp(join(tmpdir(), "wrenn-chromium-")),
      await mkdtemp(join(tmpdir(), "wrenn-chromium-")),
    ];
    const contexts: BrowserContext[] = [];
    const errors: string[] = [];
    try {
      const base = h.cp.url;
      const me = (await (await h.api("/v1/me")).json()) as {
        user: { email: string };
        team_id: string;
        teams: { id: string; name: string }[];
      };
      const teamName = me.teams.find((t) => t.id === me.team_id)?.name ?? "";

      // The owner (the platform's first user) signs in on the members page.
      const owner = await launch(profiles[0] ?? "");
      contexts.push(owner);
      await owner.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
      const a = await firstPage(owner, errors);
      await a.goto(`${base}/dashboard/members`);
      await a.getByLabel("Email").fill(me.user.email);
      await a.getByLabel("Password").fill("correct horse battery");
      await a.getByRole("button", { name: "Sign in" }).click();
      await a.getByRole("form", { name: "create invite" }).waitFor();
      await a.getByText("No pending invites.").waitFor();
      // Adding someone with no account points to invites.
      await a.getByLabel("email", { exact: true }).fill("nobody-yet@example.com");
      await a.getByRole("button", { name: "Add", exact: true }).click();
      await a.getByTestId("invite-hint").waitFor();

      // One invite to revoke, one to use; each link shown once, with a copy button.
      await a.getByRole("button", { name: "Create invite" }).click();
      const revokedLink = (await a.getByTestId("new-invite-link").textContent()) ?? "";
      assert.match(revokedLink, LINK);
      await a.locator("tr[data-invite]").first().waitFor();
      await a.getByRole("button", { name: "Revoke" }).click();
      await a.getByText("No pending invites.").waitFor();
      await a.getByLabel("invite expires in").selectOption({ label: "expires in 1 day" });
      await a.getByRole("button", { name: "Create invite" }).click();
      await a
        .getByTestId("new-invite-link")
        .filter({ hasNotText: revokedLink })
        .waitFor({ timeout: 10_000 });
      const link = (await a.getByTestId("new-invite-link").textContent()) ?? "";
      assert.match(link, LINK);
      await a.getByRole("button", { name: "Copy" }).click();
      await a.getByRole("button", { name: "Copied" }).waitFor();
      assert.equal(await a.evaluate("navigator.clipboard.readText()"), link, "the copied link");
      const row = a.locator("tr[data-invite]");
      assert.equal(await row.count(), 1);
      assert.match((await row.textContent()) ?? "", /anyone with the link.*member.*(23h 5\dm|1d)/);
      await shot(a, "30-invite-created");
      // At phone width the form, the long link and the list stay within the screen.
      await a.setViewportSize({ width: 390, height: 844 });
      const overflow = (await a.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
      )) as number;
      assert.ok(overflow <= 0, `the members page is ${overflow} px wider than a phone`);
      await shot(a, "30b-invite-phone");
      await a.setViewportSize({ width: 1280, height: 800 });

      // A second browser opens the link: the sign-up form, the invite filled in.
      const guest = await launch(profiles[1] ?? "");
      contexts.push(guest);
      const b = await firstPage(guest, errors);
      await b.goto(link);
      await b.getByRole("form", { name: "sign up" }).waitFor();
      await b.getByTestId("invite-notice").waitFor();
      const token = decodeURIComponent(LINK.exec(link)?.[1] ?? "");
      assert.equal(await b.getByLabel(/^Invite/).inputValue(), token);
      await shot(b, "31-invite-signup");
      const email = `invited-${randomBytes(3).toString("hex")}@example.com`;
      await signUp(b, email);
      await b.getByRole("heading", { name: "Sandboxes" }).waitFor();
      assert.equal(new URL(b.url()).pathname, "/dashboard/sandboxes");
      assert.equal(new URL(b.url()).hash, "", "the token leaves the address bar");
      // In the owner's team, in the invite's role, and no team of their own.
      await b.getByText(`team ${teamName}`).waitFor();
      await b.getByRole("navigation").getByRole("link", { name: "Members" }).click();
      await b.getByRole("cell", { name: me.user.email }).waitFor();
      await b.getByRole("cell", { name: email }).waitFor();
      assert.equal(await b.getByRole("form", { name: "create invite" }).count(), 0);
      await shot(b, "32-invited-member");

      // The owner sees the new member, and the invite is no longer pending.
      await a.reload();
      await a.getByRole("cell", { name: email }).waitFor();
      await a.getByText("No pending invites.").waitFor();

      // A revoked invite and a used one: a clear message on the form, no account.
      await b.getByRole("button", { name: "Sign out" }).click();
      for (const [bad, who] of [
        [revokedLink, "revoked"],
        [link, "used"],
      ] as const) {
        await b.goto(bad);
        await b.getByRole("form", { name: "sign up" }).waitFor();
        await signUp(b, `${who}-${randomBytes(3).toString("hex")}@example.com`);
        await b
          .getByRole("alert")
          .filter({ hasText: "this invite is unknown, used, expired" })
          .waitFor();
        if (who === "revoked") await shot(b, "33-invite-bad");
      }
      // Without an invite, sign-up says it is closed and what to do.
      await b.goto(`${base}/dashboard/signup`);
      await signUp(b, `none-${randomBytes(3).toString("hex")}@example.com`);
      await b.getByRole("alert").filter({ hasText: "ask an admin of your team" }).waitFor();
      const list = (await (await h.api("/v1/teams/" + me.team_id + "/members")).json()) as {
        email: string;
      }[];
      assert.deepEqual(list.map((m) => m.email).sort(), [me.user.email, email].sort());

      // An invite link opened while signed in says why it cannot be used as is.
      await a.goto(link);
      await a.getByRole("heading", { name: "Sign up with an invite" }).waitFor();
      await a.getByRole("button", { name: "Sign out and sign up" }).click();
      await a.getByRole("form", { name: "sign up" }).waitFor();
      assert.equal(await a.getByLabel(/^Invite/).inputValue(), token);
      assert.deepEqual(errors, [], "no uncaught errors in the pages");
    } finally {
      for (const c of contexts) await c.close().catch(() => {});
      await h.close();
      for (const p of profiles) await rm(p, { recursive: true, force: true });
    }
  },
);
