import { test } from "node:test";
import assert from "node:assert/strict";
import { inviteFromUrl, inviteLink, inviteToken } from "../src/invite-link.ts";

test("an invite link carries its token in the fragment and reads back", { timeout: 5000 }, () => {
  const link = inviteLink("wri_abc+/=", "https://wrenn.example");
  assert.equal(link, "https://wrenn.example/dashboard/signup#invite=wri_abc%2B%2F%3D");
  const u = new URL(link);
  assert.equal(u.search, "", "nothing for the server to log");
  assert.equal(inviteFromUrl(u.hash, u.search), "wri_abc+/=");
  assert.equal(inviteFromUrl("", "?invite=wri_typed"), "wri_typed", "a query typed by hand");
  assert.equal(inviteFromUrl("", ""), "");
});

test("the invite field takes a token or a whole pasted link", { timeout: 5000 }, () => {
  assert.equal(inviteToken("  wri_abc  "), "wri_abc");
  assert.equal(inviteToken("https://w.example/dashboard/signup#invite=wri_a%2Bb"), "wri_a+b");
  assert.equal(inviteToken("https://w.example/dashboard/signup?invite=wri_x&y=1"), "wri_x");
  assert.equal(inviteToken("invite=%E0%A4%A"), "%E0%A4%A", "a broken escape stays as typed");
});
